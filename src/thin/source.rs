//! Where 4 KiB thin-pool metadata blocks come from.
//!
//! The readers above this module are pure over bytes: they ask a [`MetadataSource`] for block
//! *n* and decode what comes back. A file or device opened normally ([`FileSource`]), an
//! in-memory image ([`MemorySource`], for tests and fuzzing) and the live `_tmeta` device read
//! with `O_DIRECT` (in [`super::live`]) all implement it.

use super::ahead::{AlignedBlock, ReadAhead};
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// The size of one metadata block; thin-pool metadata always uses 4 KiB blocks (8 sectors).
pub const METADATA_BLOCK_SIZE: usize = 4096;

/// One metadata block's bytes.
pub type Block = [u8; METADATA_BLOCK_SIZE];

/// Whether a block handed out for decoding as a btree node has had its checksum verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeChecksum {
    /// Not checked yet: the decode must verify it.
    Unchecked,
    /// The source verified its btree-node checksum (salt
    /// [`super::checksum::BTREE_CSUM_XOR`]) while reading it ahead.
    Verified,
}

/// A readable array of 4 KiB metadata blocks.
pub trait MetadataSource {
    /// The file or device name, for error messages.
    fn name(&self) -> &str;
    /// How many whole blocks the source holds.
    fn nr_blocks(&self) -> u64;
    /// Read block `n` into `buf`; a block past the end is a [`Error::Corrupt`] error.
    fn read_block(&self, n: u64, buf: &mut Block) -> Result<()>;
    /// Read block `n`, which the caller decodes as a btree node: like
    /// [`MetadataSource::read_block`], but a source that already verified the block's btree
    /// checksum (on a read-ahead thread) says so, and the caller does not checksum it again.
    /// The default reads the block and leaves the check to the caller.
    fn read_node(&self, n: u64, buf: &mut Block) -> Result<NodeChecksum> {
        self.read_block(n, buf)?;
        Ok(NodeChecksum::Unchecked)
    }
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

/// Thin-pool metadata in a regular file or a block device, read with `pread`, optionally
/// with `O_DIRECT` (a live pool's `_tmeta` device, bypassing a page cache that may be stale).
pub struct FileSource {
    file: File,
    name: String,
    nr_blocks: u64,
    /// The aligned bounce buffer `O_DIRECT` reads go through; `None` for buffered reads.
    direct: Option<Mutex<Box<AlignedBlock>>>,
    /// `O_DIRECT` only: the read-ahead workers, started by the first
    /// [`MetadataSource::prefetch`] (`None` if the file handle could not be duplicated for
    /// them: then there is no read-ahead).
    ahead: OnceLock<Option<ReadAhead>>,
}

/// Read-ahead workers of an `O_DIRECT` source: each holds one read in flight, so enough to
/// hide a device's latency; idle ones cost nothing but their small stacks.
const DIRECT_WORKERS: usize = 16;

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
        let bounce = Mutex::new(AlignedBlock::boxed());
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
            ahead: OnceLock::new(),
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
        self.read_node(n, buf).map(|_| ())
    }

    fn read_node(&self, n: u64, buf: &mut Block) -> Result<NodeChecksum> {
        if n >= self.nr_blocks {
            return Err(past_end(&self.name, n, self.nr_blocks));
        }
        let pool = self.ahead.get().and_then(Option::as_ref);
        if let Some(checked) = pool.and_then(|pool| pool.take(n, buf)) {
            return Ok(checked);
        }
        let at = n * METADATA_BLOCK_SIZE as u64;
        let io = |e| Error::io(&self.name, e);
        match &self.direct {
            None => self.file.read_exact_at(buf, at).map_err(io)?,
            Some(bounce) => {
                let mut aligned = bounce.lock().unwrap_or_else(|p| p.into_inner());
                self.file.read_exact_at(&mut aligned.0, at).map_err(io)?;
                buf.copy_from_slice(&aligned.0);
            }
        }
        Ok(NodeChecksum::Unchecked)
    }

    /// A buffered source asks the page cache to read the blocks (`POSIX_FADV_WILLNEED`, one
    /// call per run of adjacent blocks), so the kernel has them all in flight at once. An
    /// `O_DIRECT` source bypasses the page cache: it queues the blocks for its read-ahead
    /// workers ([`super::ahead`]), each holding one read in flight, which also verify the
    /// nodes' checksums off the walking thread. (Workers for buffered sources were measured
    /// and dropped: in the guest they were no faster than the page cache's read-ahead, on the
    /// host slower; docs/performance.md.) Reading ahead is safe for the live `_tmeta` because the walk
    /// reads through a held metadata snapshot, whose blocks the kernel does not reuse until it
    /// is released (after this source, and its workers, are gone).
    fn prefetch(&self, blocks: &[u64]) {
        let wanted: Vec<u64> = blocks
            .iter()
            .copied()
            .filter(|&b| b < self.nr_blocks)
            .collect();
        if wanted.is_empty() {
            return;
        }
        if self.direct.is_none() {
            self.advise_willneed(&wanted);
        } else if let Some(pool) = self.pool() {
            pool.hint(&wanted);
        }
    }
}

impl FileSource {
    /// The read-ahead workers of an `O_DIRECT` source, started on first use.
    fn pool(&self) -> Option<&ReadAhead> {
        self.ahead
            .get_or_init(|| {
                let file = self.file.try_clone().ok()?;
                Some(ReadAhead::start(file, DIRECT_WORKERS))
            })
            .as_ref()
    }

    /// `POSIX_FADV_WILLNEED` for `blocks`, one call per run of adjacent block numbers.
    fn advise_willneed(&self, blocks: &[u64]) {
        let mut sorted = blocks.to_vec();
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
