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
    /// Independent readers of the same store that read metadata areas ahead of the walk, on
    /// threads of their own, while the caller decodes. Empty (the default): the walk reads
    /// everything itself, as suits memory and test sources.
    ///
    /// One reader reads the areas strictly one after another (each read starts after the one
    /// before it finished), which keeps the order a live store relies on (see [`StoreFile`]).
    /// Several readers have reads in flight at once, for sources nothing appends to.
    fn read_ahead(&self) -> io::Result<Vec<Self>>
    where
        Self: Sized,
    {
        Ok(Vec::new())
    }
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

/// Readers with reads in flight at once on a regular file (a copy of a store): enough to keep
/// a disk's queue busy, few enough for a small machine.
const FILE_READERS: usize = 4;

/// An exception store in a file or block device.
///
/// Reading ahead ([`StoreSource::read_ahead`]): a block device may be a live `-cow` device
/// the kernel is appending to. The kernel zeroes metadata area `k + 1` before it writes area
/// `k` full, so area `k + 1` holds meaningful bytes only if it is read after area `k` was
/// seen full; before that it may hold anything, even a full-looking area of an older store
/// on the same disk space. Block devices therefore get one read-ahead thread that reads the
/// areas strictly in order (the decoding still overlaps the reads). A regular file is a copy
/// nothing appends to, so several readers keep several reads in flight.
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

    fn read_ahead(&self) -> io::Result<Vec<Self>> {
        let readers = if self.bounce.is_some() {
            1
        } else {
            FILE_READERS
        };
        (0..readers)
            .map(|_| {
                Ok(StoreFile {
                    file: self.file.try_clone()?,
                    len: self.len,
                    bounce: self.bounce.as_ref().map(|_| Vec::new()),
                })
            })
            .collect()
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
