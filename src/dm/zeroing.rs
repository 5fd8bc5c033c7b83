//! Whether a destination block device is a thin LV whose pool zeroes the blocks it
//! provisions: there, a range that reads zeroes stays zeroes without being written, and
//! writing zeroes over it would only take pool blocks (a thin LV grown with `lvextend` reads
//! zeroes in its whole new part). The receiver skips those writes (see
//! [`crate::journal::dest::Destination::zero_range`]).

use super::device::DmContext;
use super::table::{DevNum, Target};
use crate::error::Result;

/// Whether block device `devnum` is a thin device (a table of one `thin` target) whose pool
/// zeroes new blocks (no `skip_block_zeroing` feature): a range of it that reads zeroes keeps
/// reading zeroes when a later write into part of its pool block provisions that block (the
/// pool zeroes the rest of the block first, or copies an external origin's block, which read
/// as these zeroes). Under `skip_block_zeroing` the rest of a newly provisioned block holds
/// whatever the data device had there, so zeroes must be written. False for every other
/// device, and when device-mapper can't be asked (a host without it): writing zeroes is
/// always correct.
pub fn is_zeroing_thin(devnum: DevNum) -> bool {
    let ask = || -> Result<bool> {
        let ctx = DmContext::open()?;
        let names = ctx.list()?;
        let name_of = |d: DevNum| names.iter().find(|(_, n)| *n == d).map(|(s, _)| s.clone());
        let Some(name) = name_of(devnum) else {
            return Ok(false);
        };
        let Some(&Target::Thin { pool, .. }) = ctx.device(&name)?.single_target() else {
            return Ok(false);
        };
        let Some(pool_name) = name_of(pool) else {
            return Ok(false);
        };
        Ok(matches!(
            ctx.device(&pool_name)?.single_target(),
            Some(Target::ThinPool { features, .. })
                if !features.iter().any(|f| f == "skip_block_zeroing")
        ))
    };
    ask().unwrap_or(false)
}
