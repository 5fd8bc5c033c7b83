//! Block-hash compare: the change source for devices and images without snapshot metadata.
//!
//! Any two files or block devices (a plain LV, a disk, an image) are compared by hashing each
//! `block_size` block of both with blake3 and reporting the blocks whose hashes differ. Its
//! cost grows with the device size, not with the changes, so it is the fallback for sources
//! that keep no record of what changed; the COW and thin readers are preferred where they apply.
//! Two local inputs are compared byte for byte in one pass, which can also produce both
//! content fingerprints ([`compare_and_fingerprint`]). The same walker hashes a single device
//! into a per-block hash list ([`hash_file`]), which is what a remote side needs to find
//! differences without sending data. Holes of sparse files are never read.
//!
//! # Different sizes
//! Blocks are compared over the common length (the last common block may be short). When the
//! new input is longer, its tail past the old length is one `added` extent; when it is shorter,
//! the old input's tail is one `removed` extent. Tails are not read: their content is irrelevant.
//!
//! # Live devices
//! Hashing reads the inputs while they may change; compare snapshots, or quiesced devices, to
//! get a consistent answer.

mod compare;
pub mod holes;
pub mod remote;
pub mod tree;
mod walker;

use crate::changeset::{ChangeSetBuilder, Extent, ExtentKind};
use crate::error::{Error, Result};
use crate::units::Bytes;
use crate::ChangeSet;
pub use compare::Compared;
use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use walker::{walk, Input};

/// The largest block size accepted: bounds the reader's buffers (a few segments of at least
/// one block per input).
pub const MAX_BLOCK_SIZE: Bytes = Bytes(16 << 20);

/// The per-block hashes of one file or device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHashes {
    /// The block size hashed at.
    pub block_size: Bytes,
    /// The input's length; the last block covers only the bytes before it.
    pub len: Bytes,
    /// blake3 of each block, in block order.
    pub hashes: Vec<blake3::Hash>,
}

/// Check that `block_size` is a power of two between 512 bytes and [`MAX_BLOCK_SIZE`].
pub fn check_block_size(block_size: Bytes) -> Result<()> {
    let b = block_size.0;
    if b.is_power_of_two() && (512..=MAX_BLOCK_SIZE.0).contains(&b) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "block size {b} must be a power of two between 512 and {}",
            MAX_BLOCK_SIZE.0
        )))
    }
}

/// Open a file or block device for sequential reading and find its length.
fn open_input(path: &Path) -> Result<(Input, u64)> {
    let io = |e| Error::io(path, e);
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let len = if meta.file_type().is_block_device() {
        crate::units::Bytes::len_of(&file).map_err(io)?.0
    } else if meta.is_file() {
        meta.len()
    } else {
        return Err(Error::InvalidArgument(format!(
            "{}: not a regular file or block device",
            path.display()
        )));
    };
    // Advice only: the kernel reads further ahead for a sequential reader.
    let _ = nix::fcntl::posix_fadvise(
        &file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
    );
    let path = path.to_path_buf();
    Ok((Input { file, path, len }, len))
}

/// The blocks of `block_size` bytes whose contents differ between `old` and `new`, as
/// `changed` extents, plus the longer input's tail as `added` (new is longer) or `removed`.
/// Blocks are compared byte for byte (holes of sparse files unread).
pub fn compare_files(old: &Path, new: &Path, block_size: Bytes) -> Result<ChangeSet> {
    Ok(compare(old, new, block_size, false)?.changes)
}

/// [`compare_files`] and, from the same read of both inputs, the content fingerprints
/// ([`crate::stream::fingerprint`]) of `old` and `new` over their whole lengths: one pass
/// where a compare followed by two fingerprints would read everything twice.
pub fn compare_and_fingerprint(old: &Path, new: &Path, block_size: Bytes) -> Result<Compared> {
    compare(old, new, block_size, true)
}

fn compare(old: &Path, new: &Path, block_size: Bytes, fingerprints: bool) -> Result<Compared> {
    check_block_size(block_size)?;
    let (old_in, _) = open_input(old)?;
    let (new_in, _) = open_input(new)?;
    compare::compare_inputs(&[old_in, new_in], block_size, fingerprints)
}

/// Hash the first `size` bytes of the file or device at `path` in leaves of
/// [`crate::stream::fingerprint::LEAF`], calling `visit` with each leaf's hash in order; bytes
/// past its end count as zeroes. Holes and all-zero leaves are not hashed.
pub fn hash_leaves(path: &Path, size: Bytes, mut visit: impl FnMut(&blake3::Hash)) -> Result<()> {
    let (input, _) = open_input(path)?;
    walk(
        &[input],
        size.0,
        crate::stream::fingerprint::LEAF,
        |_, h| visit(&h[0]),
    )
}

/// Turns differing block indices into the extents a block-hash compare reports, so every
/// compare (two local inputs, or a local and a remote hash tree) lists ranges the same way.
pub struct BlockExtents {
    builder: ChangeSetBuilder,
    block_size: u64,
    common: u64,
}

impl BlockExtents {
    /// Collect differing blocks of `block_size` within the first `common` bytes of both inputs.
    pub fn new(block_size: Bytes, common: Bytes) -> Self {
        BlockExtents {
            builder: ChangeSetBuilder::new(block_size),
            block_size: block_size.0,
            common: common.0,
        }
    }

    /// Block `block` differs (the last common block may be short).
    pub fn push_block(&mut self, block: u64) {
        let offset = block * self.block_size;
        self.builder.push(Extent::new(
            offset,
            self.block_size.min(self.common - offset),
            ExtentKind::Changed,
        ));
    }

    /// The change set, with the longer input's tail as `added` (new is longer) or `removed`.
    pub fn finish(mut self, old_len: Bytes, new_len: Bytes) -> Result<ChangeSet> {
        let common = self.common;
        if new_len.0 > common {
            self.builder
                .push(Extent::new(common, new_len.0 - common, ExtentKind::Added));
        } else if old_len.0 > common {
            self.builder
                .push(Extent::new(common, old_len.0 - common, ExtentKind::Removed));
        }
        self.builder.build()
    }
}

/// Hash the file or device at `path` block by block, calling `visit(block_index, hash)` in
/// order, without keeping the hashes; returns the input's length. For devices too large to
/// hold a hash list, and for streaming the hashes to a peer.
pub fn hash_blocks(
    path: &Path,
    block_size: Bytes,
    mut visit: impl FnMut(u64, &blake3::Hash),
) -> Result<Bytes> {
    check_block_size(block_size)?;
    let (input, len) = open_input(path)?;
    walk(&[input], len, block_size.0, |block, h| visit(block, &h[0]))?;
    Ok(Bytes(len))
}

/// The blake3 hash of every `block_size` block of the file or device at `path`, as a list
/// (32 bytes per block: use [`hash_blocks`] to stream instead).
pub fn hash_file(path: &Path, block_size: Bytes) -> Result<BlockHashes> {
    let mut hashes = Vec::new();
    let len = hash_blocks(path, block_size, |_, h| hashes.push(*h))?;
    Ok(BlockHashes {
        block_size,
        len,
        hashes,
    })
}
