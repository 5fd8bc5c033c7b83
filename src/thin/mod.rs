//! Reader for thin-pool metadata and the diff of two thin devices.
//!
//! Layers, bottom up, each in its own file:
//!
//! - [`source`]: where 4 KiB metadata blocks come from ([`MetadataSource`]: file, memory, and
//!   the live `_tmeta` device in [`live`]); `ahead`: the worker pool that reads and checksums
//!   hinted blocks ahead of the walk for `O_DIRECT` sources.
//! - [`checksum`], [`superblock`], [`node`]: decoding and checking single blocks, pure over bytes.
//! - [`cursor`]: the one bounded btree walker (checks every node, key ranges, depth, cycles).
//! - [`details`], [`mapping`]: the device-details tree and the two-level mapping tree.
//! - [`diff`]: the lock-step walk of two device trees that skips shared subtrees.
//! - [`live`]: a live pool read through a reserved metadata snapshot.
//!
//! Entry points: [`diff_metadata_file`] (offline, like `thin_delta`) and
//! [`live::diff_pool_devices`] (a running pool, needs root and device-mapper).

mod ahead;
pub mod checksum;
pub mod cursor;
pub mod details;
pub mod diff;
pub mod live;
pub mod mapping;
pub mod node;
pub mod source;
pub mod superblock;

use crate::error::Result;
use crate::ChangeSet;
pub use source::{FileSource, MemorySource, MetadataSource};
use std::path::Path;
pub use superblock::Superblock;

/// The diff between thin devices `snap1` (older; `None` = everything mapped in `snap2`) and
/// `snap2` (newer), read from the thin-pool metadata in the file or device at `path`, with the
/// meaning of `thin_delta --snap1 --snap2` (see [`diff`]). With `metadata_snap`, the trees are
/// read through the held metadata snapshot's superblock copy instead of the live roots (like
/// `thin_delta -m`; see [`Superblock::read_held`]).
pub fn diff_metadata_file(
    path: &Path,
    snap1: Option<u64>,
    snap2: u64,
    metadata_snap: bool,
) -> Result<ChangeSet> {
    let src = FileSource::open(path)?;
    let sb = if metadata_snap {
        Superblock::read_held(&src)?
    } else {
        Superblock::read(&src, 0)?
    };
    Ok(diff::diff_devices(&src, &sb, snap1, snap2)?.0)
}
