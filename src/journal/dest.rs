//! The destination: a block device or an image file, opened for positioned reads and writes.
//! A block device is claimed exclusively while it is open (see [`super::claim`]), so one
//! apply opens it once and does all its reads and writes through that one handle.

use super::claim::open_claimed;
use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An open destination device or file.
pub struct Destination {
    file: File,
    path: PathBuf,
    is_block: bool,
}

/// Largest buffer used to write zeroes or copy old data (1 MiB).
pub const IO_PIECE: u64 = 1 << 20;

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
        Ok(Destination {
            file,
            path: path.to_path_buf(),
            is_block,
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

    /// Make `[offset, offset+len)` read as zeroes: punch a hole in files, write zeroes on devices.
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
        let zeroes = vec![0u8; len.min(IO_PIECE) as usize];
        let mut pos = offset;
        while pos < offset + len {
            let n = (offset + len - pos).min(IO_PIECE) as usize;
            self.write_at(&zeroes[..n], pos)?;
            pos += n as u64;
        }
        Ok(())
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
