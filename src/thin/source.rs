//! Where 4 KiB thin-pool metadata blocks come from.
//!
//! The readers above this module are pure over bytes: they ask a [`MetadataSource`] for block
//! *n* and decode what comes back. A file or device opened normally ([`FileSource`]), an
//! in-memory image ([`MemorySource`], for tests and fuzzing) and the live `_tmeta` device read
//! with `O_DIRECT` (in [`super::live`]) all implement it.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

/// The size of one metadata block; thin-pool metadata always uses 4 KiB blocks (8 sectors).
pub const METADATA_BLOCK_SIZE: usize = 4096;

/// One metadata block's bytes.
pub type Block = [u8; METADATA_BLOCK_SIZE];

/// A readable array of 4 KiB metadata blocks.
pub trait MetadataSource {
    /// The file or device name, for error messages.
    fn name(&self) -> &str;
    /// How many whole blocks the source holds.
    fn nr_blocks(&self) -> u64;
    /// Read block `n` into `buf`; a block past the end is a [`Error::Corrupt`] error.
    fn read_block(&self, n: u64, buf: &mut Block) -> Result<()>;
    /// Hint that `blocks` are about to be read, so a source that can read ahead issues those
    /// reads together instead of paying one device round trip per node. Only a hint: errors
    /// are ignored and the later [`MetadataSource::read_block`] checks everything. The default
    /// does nothing (memory has no latency).
    fn prefetch(&self, _blocks: &[u64]) {}
}

/// The error for a block number past the end of `src`.
pub(crate) fn past_end(name: &str, n: u64, nr_blocks: u64) -> Error {
    Error::Corrupt {
        source_name: name.to_string(),
        what: "thin-pool metadata",
        detail: format!(
            "block {n} is past the end of the metadata ({nr_blocks} blocks); \
             the copy may be truncated: take a new copy, or run a full sync"
        ),
    }
}

/// A 4 KiB buffer aligned for `O_DIRECT`.
#[repr(C, align(4096))]
struct AlignedBlock(Block);

/// Thin-pool metadata in a regular file or a block device, read with `pread`, optionally
/// with `O_DIRECT` (a live pool's `_tmeta` device, bypassing a page cache that may be stale).
pub struct FileSource {
    file: File,
    name: String,
    nr_blocks: u64,
    /// The aligned bounce buffer `O_DIRECT` reads go through; `None` for buffered reads.
    direct: Option<Mutex<Box<AlignedBlock>>>,
    /// `O_DIRECT` only: blocks read ahead by [`MetadataSource::prefetch`], taken out by the
    /// next read of each. Bounded by [`PREFETCH_LIMIT`].
    ahead: Mutex<HashMap<u64, Box<Block>>>,
}

/// Most blocks held read ahead (4 MiB): a little more than the children of two full nodes.
const PREFETCH_LIMIT: usize = 1024;

/// Threads that read ahead for an `O_DIRECT` source: enough reads in flight to hide a
/// device's latency, few enough not to matter on a small machine.
const PREFETCH_THREADS: usize = 8;

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("name", &self.name)
            .field("nr_blocks", &self.nr_blocks)
            .field("direct", &self.direct.is_some())
            .finish()
    }
}

impl FileSource {
    /// Open `path` read-only; its size (file length or device size) bounds every read.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::Unusable {
                source_name: path.display().to_string(),
                reason: "is a directory, not thin-pool metadata".into(),
            });
        }
        Self::from_file(path, file, None)
    }

    /// Open `path` (normally `/dev/mapper/<vg>-<pool>_tmeta`) read-only with `O_DIRECT`.
    pub fn open_direct(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let bounce = Mutex::new(Box::new(AlignedBlock([0; METADATA_BLOCK_SIZE])));
        Self::from_file(path, file, Some(bounce))
    }

    fn from_file(
        path: &Path,
        file: File,
        direct: Option<Mutex<Box<AlignedBlock>>>,
    ) -> Result<Self> {
        let len = crate::units::Bytes::len_of(&file)
            .map_err(|e| Error::io(path, e))?
            .0;
        Ok(FileSource {
            file,
            name: path.display().to_string(),
            nr_blocks: len / METADATA_BLOCK_SIZE as u64,
            direct,
            ahead: Mutex::new(HashMap::new()),
        })
    }
}

impl MetadataSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    fn read_block(&self, n: u64, buf: &mut Block) -> Result<()> {
        if n >= self.nr_blocks {
            return Err(past_end(&self.name, n, self.nr_blocks));
        }
        let at = n * METADATA_BLOCK_SIZE as u64;
        let io = |e| Error::io(&self.name, e);
        match &self.direct {
            None => self.file.read_exact_at(buf, at).map_err(io),
            Some(bounce) => {
                let ahead = self
                    .ahead
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&n);
                if let Some(block) = ahead {
                    buf.copy_from_slice(&block[..]);
                    return Ok(());
                }
                let mut aligned = bounce.lock().unwrap_or_else(|p| p.into_inner());
                self.file.read_exact_at(&mut aligned.0, at).map_err(io)?;
                buf.copy_from_slice(&aligned.0);
                Ok(())
            }
        }
    }

    /// Buffered sources ask the page cache to read the blocks ahead (`POSIX_FADV_WILLNEED`,
    /// one call per run of adjacent blocks); the kernel queues them all at once. `O_DIRECT`
    /// reads bypass the page cache, so there a few threads read the blocks in parallel into
    /// a bounded map the next reads take them from. That is safe for the live `_tmeta`
    /// because the walk reads through a held metadata snapshot, whose blocks the kernel
    /// does not reuse until it is released.
    fn prefetch(&self, blocks: &[u64]) {
        if self.direct.is_some() {
            self.read_ahead_direct(blocks);
            return;
        }
        let mut sorted: Vec<u64> = blocks
            .iter()
            .copied()
            .filter(|&b| b < self.nr_blocks)
            .collect();
        sorted.sort_unstable();
        sorted.dedup();
        let bs = METADATA_BLOCK_SIZE as u64;
        let willneed = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED;
        for run in sorted.chunk_by(|a, b| a + 1 == *b) {
            let (first, len) = (run[0], run.len() as u64);
            let _ = nix::fcntl::posix_fadvise(
                &self.file,
                (first * bs) as i64,
                (len * bs) as i64,
                willneed,
            );
        }
    }
}

impl FileSource {
    /// Read `blocks` with `O_DIRECT` on [`PREFETCH_THREADS`] threads into the read-ahead map
    /// (at most [`PREFETCH_LIMIT`] blocks held; read errors are left for the real read).
    fn read_ahead_direct(&self, blocks: &[u64]) {
        let wanted: Vec<u64> = {
            let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
            // A hinted block can go unread (the walk found it shared at another depth); when
            // such leftovers would crowd out new hints, drop them rather than stop reading ahead.
            if ahead.len() + blocks.len() > PREFETCH_LIMIT {
                ahead.clear();
            }
            blocks
                .iter()
                .copied()
                .filter(|b| *b < self.nr_blocks && !ahead.contains_key(b))
                .take(PREFETCH_LIMIT)
                .collect()
        };
        if wanted.len() < 2 {
            return;
        }
        let per_thread = wanted.len().div_ceil(PREFETCH_THREADS);
        std::thread::scope(|scope| {
            for share in wanted.chunks(per_thread) {
                scope.spawn(move || {
                    let mut aligned = Box::new(AlignedBlock([0; METADATA_BLOCK_SIZE]));
                    for &n in share {
                        let at = n * METADATA_BLOCK_SIZE as u64;
                        if self.file.read_exact_at(&mut aligned.0, at).is_ok() {
                            let block = Box::new(aligned.0);
                            let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
                            ahead.insert(n, block);
                        }
                    }
                });
            }
        });
    }
}

/// Thin-pool metadata held in memory: for tests, fuzzing and synthetic trees.
#[derive(Debug, Clone)]
pub struct MemorySource {
    name: String,
    bytes: Vec<u8>,
}

impl MemorySource {
    /// Wrap `bytes` (a trailing partial block is ignored) under `name`.
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        MemorySource {
            name: name.into(),
            bytes,
        }
    }
}

impl MetadataSource for MemorySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn nr_blocks(&self) -> u64 {
        (self.bytes.len() / METADATA_BLOCK_SIZE) as u64
    }

    fn read_block(&self, n: u64, buf: &mut Block) -> Result<()> {
        if n >= self.nr_blocks() {
            return Err(past_end(&self.name, n, self.nr_blocks()));
        }
        let start = n as usize * METADATA_BLOCK_SIZE;
        buf.copy_from_slice(&self.bytes[start..start + METADATA_BLOCK_SIZE]);
        Ok(())
    }
}

/// Little-endian `u32` at `off`; callers pass offsets already checked against the block size.
pub(crate) fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(v)
}

/// Little-endian `u64` at `off`; callers pass offsets already checked against the block size.
pub(crate) fn le_u64(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(v)
}
