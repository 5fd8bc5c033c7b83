//! Reader for the persistent exception store of a classic (COW) snapshot's `-cow` device.
//!
//! A classic LVM snapshot keeps, in its `-cow` device, the list of origin chunks that were
//! copied out before the origin overwrote them (or that were written through the snapshot
//! itself). That list is exactly "what changed since the snapshot was taken", at chunk
//! granularity, and reading it costs one metadata chunk per `chunk_bytes / 16` changes instead
//! of a scan of the whole volume.
//!
//! Layout: chunk 0 holds the [`header`]; metadata areas of
//! `E = chunk_bytes / 16` records `(old_chunk, new_chunk)` follow at chunks `1 + k(E + 1)`, each
//! followed by its `E` data chunks ([`geometry`]); the list ends at the first record with
//! `new_chunk == 0` ([`area`]). The parsers are pure over bytes ([`StoreSource`] is implemented
//! for `&[u8]`); [`StoreFile`] adds the file/device reads, with `O_DIRECT` for block devices.
//!
//! # Which data to send
//! The store tells *which* chunks changed, not their current contents. The changed chunks'
//! data must be read from a **newer snapshot** of the same origin (a consistent point in time),
//! never from the live origin, which keeps changing while it is read. (The data chunks inside
//! the store hold the *old* contents, as of the snapshot.)
//!
//! # Live stores
//! [`changes_from_file`] may be pointed at a live `/dev/mapper/<vg>-<snap>-cow` device: it
//! reads below the page cache and re-reads the area the kernel is appending to until two reads
//! agree. The result is the list as committed at some instant during the read; chunks copied
//! later are caught by the next diff.
//!
//! # Refusals
//! An unformatted, invalidated (overflowed or failed) or unknown-version store, one that ends
//! mid-area, or a list pointing outside the store, at a metadata area, or at one origin chunk
//! twice, is refused with an error naming the device and the fix (a full resync).

pub mod area;
mod collect;
pub mod geometry;
pub mod header;
mod parallel;
pub mod problem;
mod radix;
mod runs;
pub mod source;
mod walk;

pub use problem::StoreProblem;
pub use source::{StoreFile, StoreSource};
pub use walk::read_store;

use crate::error::{Error, Result};
use crate::ChangeSet;
use std::path::Path;

/// The changed extents recorded in the exception store held in the file or device at `path`
/// (a copy of a `-cow` device, or the live device itself): one `changed` extent per listed
/// origin chunk, merged, with the store's chunk size as the block size.
pub fn changes_from_file(path: &Path) -> Result<ChangeSet> {
    let mut src = StoreFile::open(path).map_err(|e| Error::io(path, e))?;
    read_store(&mut src, &path.display().to_string())
}

/// The changed extents recorded in a store image held in memory; `name` is used in errors.
pub fn changes_from_bytes(bytes: &[u8], name: &str) -> Result<ChangeSet> {
    let mut src = bytes;
    read_store(&mut src, name)
}
