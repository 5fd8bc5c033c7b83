//! What kind of thin device a destination block device is, for how the receiver writes it:
//! - in a pool that zeroes the blocks it provisions, a range that reads zeroes stays zeroes
//!   without being written, and writing zeroes over it would only take pool blocks (a thin LV
//!   grown with `lvextend` reads zeroes in its whole new part): the receiver skips those
//!   writes (see [`crate::journal::dest::Destination::zero_range`]);
//! - in a pool that skips zeroing (`lvcreate -Zn`, feature `skip_block_zeroing`), the first
//!   write into an unprovisioned pool block provisions all of it *without* zeroing: the rest
//!   of the block then reads whatever the data device held there (a deleted LV's data). The
//!   receiver writes such a destination in whole pool blocks (see
//!   [`crate::journal::dest::Destination::write_data`]).

use super::device::DmContext;
use super::table::{DevNum, Target};
use crate::error::Result;
use crate::units::Bytes;

/// The kind of a destination block device, as far as provisioning goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinKind {
    /// Not a thin device (or device-mapper can't be asked): every write lands as written.
    NotThin,
    /// A thin device whose pool zeroes new blocks (no `skip_block_zeroing` feature): a range
    /// that reads zeroes keeps reading zeroes when a later write into part of its pool block
    /// provisions that block (the pool zeroes the rest of the block first, or copies an
    /// external origin's block, which read as these zeroes).
    Zeroing,
    /// A thin device whose pool skips zeroing new blocks, with data blocks of this size: a
    /// write into part of an unprovisioned block leaves the rest of it reading old data.
    SkipsZeroing {
        /// The pool's data block size.
        block: Bytes,
    },
}

/// The [`ThinKind`] of block device `devnum`: a thin device is a table of one `thin` target
/// whose pool device is a table of one `thin-pool` target. [`ThinKind::NotThin`] for every
/// other device, and when device-mapper can't be asked (a host without it): writing every
/// byte as it comes is always correct there.
pub fn thin_kind(devnum: DevNum) -> ThinKind {
    let ask = || -> Result<ThinKind> {
        let ctx = DmContext::open()?;
        let names = ctx.list()?;
        let name_of = |d: DevNum| names.iter().find(|(_, n)| *n == d).map(|(s, _)| s.clone());
        let Some(name) = name_of(devnum) else {
            return Ok(ThinKind::NotThin);
        };
        let Some(&Target::Thin { pool, .. }) = ctx.device(&name)?.single_target() else {
            return Ok(ThinKind::NotThin);
        };
        let Some(pool_name) = name_of(pool) else {
            return Ok(ThinKind::NotThin);
        };
        Ok(match ctx.device(&pool_name)?.single_target() {
            Some(Target::ThinPool {
                features,
                block_size,
                ..
            }) if features.iter().any(|f| f == "skip_block_zeroing") => {
                match block_size.to_bytes().filter(|b| b.0 > 0) {
                    Some(block) => ThinKind::SkipsZeroing { block },
                    // (A kernel never reports one: a zero or overflowing block size.)
                    None => ThinKind::NotThin,
                }
            }
            Some(Target::ThinPool { .. }) => ThinKind::Zeroing,
            _ => ThinKind::NotThin,
        })
    };
    ask().unwrap_or_else(|e| {
        // No device-mapper (a host without it) is the usual reason, and there every write
        // lands as written; say it, in case it is a thin LV whose pool skips zeroing.
        tracing::debug!(
            device = %format!("{}:{}", devnum.major, devnum.minor),
            error = %e,
            "can't ask device-mapper what kind of device the destination is; writing it as is"
        );
        ThinKind::NotThin
    })
}
