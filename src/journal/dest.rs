//! The destination: a block device or an image file, opened for positioned reads and writes.
//! A block device is claimed exclusively while it is open (see [`super::claim`]), so one
//! apply opens it once and does all its reads and writes through that one handle.

use super::claim::open_claimed;
use crate::dm::zeroing::ThinKind;
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
    /// Whether it is a thin LV ([`crate::dm::zeroing`]): in a pool that zeroes new blocks,
    /// zeroes are written only where it reads something else; in a pool that skips zeroing,
    /// every write is widened to whole pool blocks.
    thin: ThinKind,
    /// The device's size when opened (a block device's does not change under the claim), which
    /// whole-block writes stop at (asked only for a thin LV whose pool skips zeroing).
    size_at_open: u64,
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
        let thin = match is_block {
            true => {
                use std::os::unix::fs::MetadataExt;
                let rdev = meta.rdev();
                crate::dm::zeroing::thin_kind(crate::dm::DevNum {
                    major: nix::sys::stat::major(rdev) as u32,
                    minor: nix::sys::stat::minor(rdev) as u32,
                })
            }
            false => ThinKind::NotThin,
        };
        let mut d = Destination {
            file,
            path: path.to_path_buf(),
            is_block,
            thin,
            size_at_open: 0,
        };
        if let ThinKind::SkipsZeroing { .. } = thin {
            d.size_at_open = d.size()?;
        }
        Ok(d)
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

    /// Write all of `buf` at `offset`, exactly there (restoring journaled old bytes).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.file.write_all_at(buf, offset).map_err(|e| self.err(e))
    }

    /// On a thin LV whose pool skips zeroing new blocks: the whole pool blocks a write of
    /// `[offset, offset+len)` rewrites, as `(start, end)`. `None` on every other destination,
    /// where writes land exactly where they are asked for.
    pub fn whole_blocks(&self, offset: u64, len: u64) -> Option<(u64, u64)> {
        self.widened(offset, len).map(|w| (w.start, w.end))
    }

    /// A write of `[offset, offset+len)` widened to whole pool blocks, on a thin LV whose
    /// pool skips zeroing new blocks; `None` elsewhere.
    fn widened(&self, offset: u64, len: u64) -> Option<Widened> {
        match self.thin {
            ThinKind::SkipsZeroing { block } => {
                Some(Widened::new(offset, len, block.0, self.size_at_open))
            }
            _ => None,
        }
    }

    /// Whether this destination is written in whole pool blocks (a thin LV whose pool skips
    /// zeroing new blocks). Such an apply is never kept half-done for `--resume`: its undo
    /// entries cover whole blocks, which a resumed apply (or one from an lvmsync that wrote
    /// records exactly) could not continue without journaling a block twice or not at all,
    /// so it is rolled back instead, and a kept apply is not resumed into it.
    pub fn writes_whole_blocks(&self) -> bool {
        matches!(self.thin, ThinKind::SkipsZeroing { .. })
    }

    /// Write a record's `data` at `offset`. On a thin LV whose pool skips zeroing new blocks
    /// the write covers whole pool blocks: the parts of its first and last block outside the
    /// record are read first and written back as read. A block not provisioned yet reads
    /// zeroes, so writing it whole provisions it with those zeroes and the record's bytes
    /// (written alone, the record would provision it with whatever the pool's data device
    /// held around it); a provisioned block gets its own bytes back. Either way no byte
    /// outside the record reads differently afterwards. (The receiver journals whole blocks
    /// of such a destination, so a write torn by a crash is undone too: see
    /// `pipeline::Journaler`.)
    pub fn write_data(&self, data: &[u8], offset: u64) -> Result<()> {
        let len = data.len() as u64;
        match self.widened(offset, len) {
            Some(w) => self.write_widened(w, offset, len, Some(data)),
            None => self.write_at(data, offset),
        }
    }

    /// Write `data` (zeroes if `None`) over `[offset, offset+len)`, widened as `w`: the
    /// partial first and last blocks are read, overlaid and written whole, in pieces of at
    /// most [`IO_PIECE`] (a pool block may be up to 1 GiB; every byte of it is written, so
    /// which piece's write provisions the block does not matter).
    fn write_widened(&self, w: Widened, offset: u64, len: u64, data: Option<&[u8]>) -> Result<()> {
        let end = offset + len;
        let mut buf = Vec::new();
        for (from, to) in [(w.start, w.head_end), (w.tail_start, w.end)] {
            let mut pos = from;
            while pos < to {
                let n = (to - pos).min(IO_PIECE);
                buf.resize(n as usize, 0);
                self.read_at(&mut buf, pos)?;
                let (a, b) = (offset.max(pos), end.min(pos + n));
                if a < b {
                    let part = &mut buf[(a - pos) as usize..(b - pos) as usize];
                    match data {
                        Some(d) => {
                            part.copy_from_slice(&d[(a - offset) as usize..(b - offset) as usize])
                        }
                        None => part.fill(0),
                    }
                }
                self.write_at(&buf, pos)?;
                pos += n;
            }
        }
        let (a, b) = (w.head_end, w.tail_start);
        match data {
            _ if a >= b => Ok(()),
            Some(d) => self.write_at(&d[(a - offset) as usize..(b - offset) as usize], a),
            None => self.write_zeroes(a, b - a),
        }
    }

    /// Make `[offset, offset+len)` read as zeroes: punch a hole in files; on a thin LV whose
    /// pool zeroes new blocks, write zeroes only over the 64 KiB pieces that read anything
    /// else (elsewhere they would provision pool blocks for nothing: all of a thin LV's part
    /// grown by `lvextend` reads zeroes); on a thin LV whose pool skips zeroing, write them
    /// in whole pool blocks as [`Self::write_data`] does; write zeroes on other devices (a
    /// linear LV's new extents hold whatever their disk had). Leaving bytes that already read
    /// zeroes unwritten changes nothing a rollback or a reader could see. (Restoring a
    /// journal's zero entries goes through here too; widened, they write back what the rest
    /// of their first and last blocks reads, and the entries for those parts restore them.)
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
        if let Some(w) = self.widened(offset, len) {
            return self.write_widened(w, offset, len, None);
        }
        match self.thin {
            ThinKind::Zeroing => self.zero_where_not_zero(offset, len),
            _ => self.write_zeroes(offset, len),
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

#[cfg(test)]
impl Destination {
    /// The existing file `path` opened as a stand-in for a thin LV whose pool skips zeroing,
    /// with pool blocks of `block` bytes (a file can't emulate the provisioning: tests of
    /// this check contents only).
    pub(crate) fn skipping_zeroing_for_test(path: &Path, block: u64) -> Destination {
        let file = File::options().read(true).write(true).open(path).unwrap();
        Destination {
            size_at_open: file.metadata().unwrap().len(),
            file,
            path: path.to_path_buf(),
            is_block: true,
            thin: ThinKind::SkipsZeroing {
                block: crate::units::Bytes(block),
            },
        }
    }
}

/// A write of `[offset, offset+len)` widened to whole blocks: `[start, head_end)` is its
/// partial first block (empty if the write starts on a block boundary), rewritten whole;
/// `[head_end, tail_start)` is written as it comes; `[tail_start, end)` is its partial last
/// block (empty if it ends on a boundary or shares its one block with the head), rewritten
/// whole. `end` stops at the device's size (its last block may be cut short).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Widened {
    start: u64,
    head_end: u64,
    tail_start: u64,
    end: u64,
}

impl Widened {
    /// Widen `[offset, offset+len)` to blocks of `block` bytes (> 0) of a device of `size`.
    fn new(offset: u64, len: u64, block: u64, size: u64) -> Widened {
        let rec_end = offset + len;
        if len == 0 {
            return Widened {
                start: offset,
                head_end: offset,
                tail_start: offset,
                end: offset,
            };
        }
        let start = offset - offset % block;
        let end = rec_end
            .div_ceil(block)
            .saturating_mul(block)
            .min(size)
            .max(rec_end);
        let head_end = match start < offset {
            true => (start + block).min(end),
            false => start,
        };
        let tail_start = match rec_end < end {
            true => (rec_end - rec_end % block).max(head_end),
            false => end,
        };
        Widened {
            start,
            head_end,
            tail_start,
            end,
        }
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
            thin: ThinKind::Zeroing,
            size_at_open: 4 * IO_PIECE,
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

    fn widened(start: u64, head_end: u64, tail_start: u64, end: u64) -> Widened {
        Widened {
            start,
            head_end,
            tail_start,
            end,
        }
    }

    /// Writes are widened to the pool blocks they touch: partial first and last blocks are
    /// rewritten whole, aligned parts written as they come, the device's end not passed.
    #[test]
    fn writes_widen_to_whole_blocks() {
        const B: u64 = 65536;
        let size = 10 * B + 4096;
        // 4 KiB in the middle of a block: that one block, as its head.
        assert_eq!(
            Widened::new(B + 8192, 4096, B, size),
            widened(B, 2 * B, 2 * B, 2 * B)
        );
        // Aligned: nothing to read.
        assert_eq!(Widened::new(B, 3 * B, B, size), widened(B, B, 4 * B, 4 * B));
        // From mid-block to mid-block: head block, aligned middle, tail block.
        assert_eq!(
            Widened::new(B + 100, 3 * B, B, size),
            widened(B, 2 * B, 4 * B, 5 * B)
        );
        // Starting aligned, ending mid-block: tail only.
        assert_eq!(Widened::new(0, B + 1, B, size), widened(0, 0, B, 2 * B));
        // The device's last block is cut short at its size.
        assert_eq!(
            Widened::new(10 * B + 100, 100, B, size),
            widened(10 * B, size, size, size)
        );
        assert_eq!(
            Widened::new(9 * B, B + 4096, B, size),
            widened(9 * B, 9 * B, size, size)
        );
        // A block larger than a write, and a write crossing one boundary of such blocks.
        assert_eq!(
            Widened::new(3 * B, B, 4 * B, 16 * B),
            widened(0, 4 * B, 4 * B, 4 * B)
        );
        assert_eq!(
            Widened::new(3 * B, 2 * B, 4 * B, 16 * B),
            widened(0, 4 * B, 4 * B, 8 * B)
        );
        assert_eq!(Widened::new(5, 0, B, size), widened(5, 5, 5, 5));
    }

    /// Widened writes change no byte outside the record: on a file standing in for a thin LV
    /// whose pool skips zeroing (which a file can't emulate: this checks the contents, not
    /// the provisioning), data and zero records at block edges leave the rest as it was.
    #[test]
    fn widened_writes_keep_the_bytes_around_the_record() {
        const B: u64 = 65536;
        // Pool blocks of 128 KiB, and of 3 MiB (read and written back in 1 MiB pieces).
        for (block, size) in [(2 * B, 6 * B + 8192), (48 * B, 100 * B + 8192)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("nz");
            let mut want: Vec<u8> = (0..size).map(|i| (i % 251) as u8 | 1).collect();
            std::fs::write(&path, &want).unwrap();
            let d = Destination::skipping_zeroing_for_test(&path, block);
            assert_eq!(d.whole_blocks(B, 4096), Some((0, block.min(size))));
            let records: [(u64, u64, Option<u8>); 6] = [
                (4096, 4096, Some(0xA1)),
                (3 * B - 100, 2 * B + 300, Some(0xA2)),
                (B + 5, 7, None),
                (5 * B, B + 8192, None),
                (2 * B, 2 * B, Some(0xA3)),
                (size - 5000, 4000, Some(0xA4)),
            ];
            for (offset, len, fill) in records {
                let range = offset as usize..(offset + len) as usize;
                match fill {
                    Some(b) => d.write_data(&vec![b; len as usize], offset).unwrap(),
                    None => d.zero_range(offset, len).unwrap(),
                }
                want[range].fill(fill.unwrap_or(0));
                assert!(
                    std::fs::read(&path).unwrap() == want,
                    "block {block}: after {offset}+{len}"
                );
            }
        }
    }
}
