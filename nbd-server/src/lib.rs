//! A spec-conformant NBD server (fixed newstyle handshake, OPT_GO, structured replies,
//! block status) in front of any [`BlockDevice`].
//!
//! This crate does not depend on lvmsync: the root crate implements [`BlockDevice`] for its
//! journaled destination and composes the two. The protocol itself lands with the NBD issue.

use std::io;

/// The storage an NBD export serves: the only thing the server needs from its user.
pub trait BlockDevice: Send + Sync {
    /// Size of the export in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from byte `offset`; the server has already checked the range.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write `buf` at byte `offset`; the server has already checked the range.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make every completed write durable.
    fn flush(&self) -> io::Result<()>;
}

/// Errors of the NBD server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on the connection or the device.
    #[error("NBD I/O: {0}")]
    Io(#[from] io::Error),
}
