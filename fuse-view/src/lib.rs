//! Present a set of changed extents as a read-only directory of files over FUSE, so an admin
//! can inspect a delta, a snapshot or a point-in-time view before syncing.
//!
//! This crate does not depend on lvmsync: the root crate implements [`ExtentSource`] for
//! deltas, snapshots and snapback journals and composes the two. The FUSE filesystem itself
//! lands with the view issue.

use std::io;

/// One extent the view shows as a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewExtent {
    /// Byte offset of the extent in the device.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
}

/// What the view reads from: a list of extents and their bytes.
pub trait ExtentSource: Send + Sync {
    /// The extents to show, sorted by offset.
    fn extents(&self) -> &[ViewExtent];
    /// Read bytes of the device at `offset` (inside one of the extents) into `buf`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

/// Errors of the FUSE view.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on the mount point or the source.
    #[error("FUSE view I/O: {0}")]
    Io(#[from] io::Error),
}
