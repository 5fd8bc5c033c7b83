//! Where the store's bytes come from: a byte slice (tests, fuzzing, copies in memory) or a
//! file or block device read with positioned reads.
//!
//! A live `-cow` device is written by the kernel's snapshot target below the device's page
//! cache, so a cached read could return an area as it was minutes ago. Block devices are
//! therefore opened with `O_DIRECT` (reads go to the device every time, through an aligned
//! bounce buffer); regular files (copies of a store) use ordinary buffered reads.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Positioned, exact reads from an exception store of known length.
pub trait StoreSource {
    /// The store's length in bytes.
    fn store_len(&self) -> u64;
    /// Fill `buf` from byte `offset`; the caller keeps `offset + buf.len()` within the store.
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl StoreSource for &[u8] {
    fn store_len(&self) -> u64 {
        self.len() as u64
    }

    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Alignment of `O_DIRECT` buffers, offsets and lengths (covers 512 B and 4 KiB devices).
const DIRECT_ALIGN: usize = 4096;

/// An exception store in a file or block device.
#[derive(Debug)]
pub struct StoreFile {
    file: File,
    len: u64,
    /// `Some` for block devices opened with `O_DIRECT`: the over-allocated bounce buffer.
    bounce: Option<Vec<u8>>,
}

impl StoreFile {
    /// Open `path` for reading: block devices with `O_DIRECT`, anything else buffered.
    pub fn open(path: &Path) -> io::Result<Self> {
        let is_block = std::fs::metadata(path)?.file_type().is_block_device();
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true);
        if is_block {
            opts.custom_flags(nix::libc::O_DIRECT);
        }
        let file = opts.open(path)?;
        let len = if is_block {
            crate::units::Bytes::len_of(&file)?.0
        } else {
            // Areas are one chunk in every E + 1: read-ahead would only fetch data chunks.
            let random = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_RANDOM;
            let _ = nix::fcntl::posix_fadvise(&file, 0, 0, random);
            file.metadata()?.len()
        };
        Ok(StoreFile {
            file,
            len,
            bounce: is_block.then(Vec::new),
        })
    }
}

impl StoreSource for StoreFile {
    fn store_len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let Some(bounce) = self.bounce.as_mut() else {
            return self.file.read_exact_at(buf, offset);
        };
        // O_DIRECT: read whole aligned blocks covering the request, then copy out.
        let want_end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let align = DIRECT_ALIGN as u64;
        let start = offset - offset % align;
        let end = want_end
            .next_multiple_of(align)
            .min(self.len.next_multiple_of(512));
        let span = usize::try_from(end - start).map_err(|_| io::ErrorKind::InvalidInput)?;
        if bounce.len() < span + DIRECT_ALIGN {
            bounce.resize(span + DIRECT_ALIGN, 0);
        }
        let skew = bounce.as_ptr().align_offset(DIRECT_ALIGN);
        let aligned = bounce
            .get_mut(skew..skew + span)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.file.read_exact_at(aligned, start)?;
        let from = (offset - start) as usize;
        buf.copy_from_slice(&aligned[from..from + buf.len()]);
        Ok(())
    }
}
