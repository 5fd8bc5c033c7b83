//! lvmsync: mirror Linux block devices by their *changes only*.
//!
//! The library is organised one module per concept:
//!
//! - [`units`]: byte/sector/block newtypes, so a sector count can't be passed where bytes are meant.
//! - [`changeset`]: the one [`ChangeSet`] type every change source produces and every sink consumes.
//! - [`cow`]: reader for a classic snapshot's persistent exception store (`-cow` device).
//! - [`thin`]: reader for thin-pool metadata and the shared-subtree-skipping diff of two thin devices.
//! - [`blockhash`]: the fallback change source: blake3 per block over two images or devices.
//! - [`transport`]: byte transports (file, ssh, tls://, quic://, tcp://) carrying a delta stream.
//! - [`journal`]: the undo-journaled receiver: apply, recover, destination state.
//! - [`stream`]: the versioned, checksummed delta stream format and the send pipeline.
//! - [`dm`]: device discovery through device-mapper (tables, status, messages) and the lvm2 CLI.
//!
//! Format readers are pure over bytes (no device I/O inside), so they are tested and fuzzed
//! without root; the [`dm`] module is the only place that talks to the kernel.

pub mod blockhash;
pub mod changeset;
pub mod cow;
pub mod dm;
pub mod error;
pub mod journal;
pub mod stream;
pub mod thin;
pub mod transport;
pub mod units;

pub use changeset::{ChangeSet, Extent, ExtentKind};
pub use error::{Error, ErrorClass, Result};
