//! The destination: a block device or an image file, opened for positioned reads and writes.
//! A block device is claimed exclusively while it is open (see [`super::claim`]), so one
//! apply opens it once and does all its reads and writes through that one handle.

use super::claim::open_claimed;
use crate::error::{Error, Result};
use crate::stream::encode::is_zero;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An open destination device or file.
pub struct Destination {
    file: File,
    path: PathBuf,
    is_block: bool,
    /// A thin LV whose pool zeroes new blocks ([`crate::dm::zeroing`]): zeroes are written
    /// only where it reads something else.
    zeroing_thin: bool,
}

/// Largest buffer used to write zeroes or copy old data (1 MiB).
pub const IO_PIECE: u64 = 1 << 20;

/// The smallest data block of a thin pool (64 KiB): a zeroing thin destination's pieces that
/// already read zeroes are left unwritten at this grain.
const THIN_MIN_BLOCK: u64 = 64 << 10;

impl Destination {
    /// Open `path` read-write; with `create`, a missing regular file is created empty. A
    /// block device is claimed exclusively until the `Destination` is dropped: refused with
    /// a destination error if it is mounted or in use.
    pub fn open(path: &Path, create: bool) -> Result<Self> {
        let (file, is_block) = open_claimed(path, create)?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !is_block && !meta.is_file() {
            return Err(Error::Destination {
                dest: path.display().to_string(),
                detail: "is neither a block device nor a regular file".into(),
            });
        }
        let zeroing_thin = is_block && {
            use std::os::unix::fs::MetadataExt;
            let rdev = meta.rdev();
            crate::dm::zeroing::is_zeroing_thin(crate::dm::DevNum {
                major: nix::sys::stat::major(rdev) as u32,
                minor: nix::sys::stat::minor(rdev) as u32,
            })
        };
        Ok(Destination {
            file,
            path: path.to_path_buf(),
            is_block,
            zeroing_thin,
        })
    }

    /// Open `path` as [`Self::open`] does if it exists; `None` if it does not (a file an
    /// apply of a full stream creates later). Writers call this before they create any
    /// journal, lock or state file, so a busy device is refused with nothing written.
    pub fn claim(path: &Path) -> Result<Option<Self>> {
        match Self::open(path, false) {
            Ok(d) => Ok(Some(d)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The path as given (the state files of an apply into this destination are keyed by it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as given, for messages.
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// True for block devices (which can't be grown or truncated here).
    pub fn is_block(&self) -> bool {
        self.is_block
    }

    fn err(&self, e: std::io::Error) -> Error {
        Error::io(&self.path, e)
    }

    /// Current size in bytes.
    pub fn size(&self) -> Result<u64> {
        crate::units::Bytes::len_of(&self.file)
            .map(|b| b.0)
            .map_err(|e| self.err(e))
    }

    /// The holes of a destination file (ranges that read as zeroes without being read),
    /// asked in increasing order; a block device has none. Asked afresh for every record (a
    /// cursor does not see later writes), so the kind comes from [`Self::open`]'s check, not
    /// a `statx` per record; sizes are not cached (`--grow` changes them mid-apply).
    pub fn holes(&self) -> crate::blockhash::holes::Holes<'_> {
        crate::blockhash::holes::Holes::of_kind(&self.file, !self.is_block)
    }

    /// Read exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| self.err(e))
    }

    /// Write all of `buf` at `offset`.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.file.write_all_at(buf, offset).map_err(|e| self.err(e))
    }

    /// Make `[offset, offset+len)` read as zeroes: punch a hole in files; on a thin LV whose
    /// pool zeroes new blocks, write zeroes only over the 64 KiB pieces that read anything
    /// else (elsewhere they would provision pool blocks for nothing: all of a thin LV's part
    /// grown by `lvextend` reads zeroes); write zeroes on other devices (a linear LV's new
    /// extents hold whatever their disk had). Leaving bytes that already read zeroes
    /// unwritten changes nothing a rollback or a reader could see.
    pub fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        if !self.is_block {
            use nix::fcntl::{fallocate, FallocateFlags};
            let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            if let (Ok(o), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) {
                if fallocate(&self.file, flags, o, l).is_ok() {
                    return Ok(());
                }
            }
        }
        match self.zeroing_thin {
            true => self.zero_where_not_zero(offset, len),
            false => self.write_zeroes(offset, len),
        }
    }

    /// Write zeroes over `[offset, offset+len)`.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        let zeroes = vec![0u8; len.min(IO_PIECE) as usize];
        let mut pos = offset;
        while pos < offset + len {
            let n = (offset + len - pos).min(IO_PIECE) as usize;
            self.write_at(&zeroes[..n], pos)?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Write zeroes over the [`THIN_MIN_BLOCK`]-aligned pieces of `[offset, offset+len)` that
    /// read anything else, each run of them at once.
    fn zero_where_not_zero(&self, offset: u64, len: u64) -> Result<()> {
        let end = offset + len;
        let mut buf = vec![0u8; len.min(IO_PIECE) as usize];
        // The run of pieces not yet zeroed: from `run` to `pos`.
        let mut run = None;
        let mut pos = offset;
        while pos < end {
            let n = (end - pos).min(IO_PIECE) as usize;
            self.read_at(&mut buf[..n], pos)?;
            let (start, piece_end) = (pos, pos + n as u64);
            while pos < piece_end {
                let next = ((pos / THIN_MIN_BLOCK + 1) * THIN_MIN_BLOCK).min(piece_end);
                let sub = &buf[(pos - start) as usize..(next - start) as usize];
                match (is_zero(sub), run) {
                    (false, None) => run = Some(pos),
                    (true, Some(from)) => {
                        self.write_zeroes(from, pos - from)?;
                        run = None;
                    }
                    _ => {}
                }
                pos = next;
            }
        }
        match run {
            Some(from) => self.write_zeroes(from, end - from),
            None => Ok(()),
        }
    }

    /// Resize a regular file (growing reads as zeroes); refused for block devices.
    pub fn set_len(&self, len: u64) -> Result<()> {
        if self.is_block {
            return Err(Error::Destination {
                dest: self.name(),
                detail: format!(
                    "a block device can't be resized here; grow it to {len} bytes \
                     (lvextend -L {len}b) and retry"
                ),
            });
        }
        self.file.set_len(len).map_err(|e| self.err(e))
    }

    /// Make every write so far durable.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| self.err(e))
    }
}

/// fsync a directory so a create, rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A zeroing thin destination's zeroes go only where it reads something else: on a sparse
    /// file standing in for it, the pieces that read zeroes stay holes (unallocated, as they
    /// stay unprovisioned on the LV) and the others are zeroed.
    #[test]
    fn zeroes_are_written_only_where_the_destination_reads_something_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thin");
        let f = File::create(&path).unwrap();
        f.set_len(4 * IO_PIECE).unwrap();
        // Non-zero bytes in two 64 KiB pieces: one inside the range, one straddling its end.
        f.write_all_at(&[7; 100], IO_PIECE + 5).unwrap();
        f.write_all_at(&[9; 10], 3 * IO_PIECE + 995).unwrap();
        f.sync_all().unwrap();
        let d = Destination {
            file: File::options().read(true).write(true).open(&path).unwrap(),
            path: path.clone(),
            is_block: true,
            zeroing_thin: true,
        };
        d.zero_range(1000, 3 * IO_PIECE).unwrap();
        let all = std::fs::read(&path).unwrap();
        let end = 3 * IO_PIECE as usize + 1000;
        assert_eq!(all[..end].iter().position(|&b| b != 0), None);
        assert_eq!(all[end..end + 6], [9, 9, 9, 9, 9, 0]);
        // Two 64 KiB pieces allocated (the two written), not the 3 MiB range.
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(
            allocated <= 2 * THIN_MIN_BLOCK + 8192,
            "{allocated} bytes allocated"
        );
    }
}
