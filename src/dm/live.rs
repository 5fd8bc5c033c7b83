//! `lvmsync diff <snapshot> [--since <older>]` on live LVM/dm devices: find what kind of
//! snapshot was named and hand it to the reader for that kind.
//!
//! - **Thin snapshots**: the pool's metadata is read under a reserved metadata snapshot
//!   ([`crate::thin::live::diff_pool_devices`]). With `--since`, the changes between the two
//!   thin devices; without it, everything mapped in `<snapshot>` (an initial full sync, where
//!   unmapped ranges are holes that need no transfer).
//! - **Classic (COW) snapshots**: the changes are read from the exception store of the *older*
//!   snapshot (its `-cow` device, [`crate::cow::changes_from_file`]): it lists every origin chunk
//!   written since that snapshot was taken. With `--since <older>`, that is `<older>`'s store and
//!   `<snapshot>` must be a newer snapshot of the same origin; without it, `<snapshot>`'s own
//!   store. **The data of those chunks must be read from a newer snapshot** (a consistent point
//!   in time: `<snapshot>` when `--since` is given), **never from the live origin**, which keeps
//!   changing while it is read; the chunks inside the store hold the *old* contents.
//!   The older store keeps growing after the newer snapshot is taken, so the list can be a
//!   superset of the chunks that differ between the two snapshots; sending a superset with the
//!   newer snapshot's data still makes the destination equal that snapshot.

use super::probe::{probe, DeviceKind, PoolInfo, ProbeReport, ThinInfo};
use crate::error::{Error, Result};
use crate::ChangeSet;
use std::ops::Range;
use std::path::PathBuf;

/// The extents that changed up to `snapshot`: since snapshot `since` when given, else (thin)
/// everything mapped in it or (classic) everything its origin changed since it was taken.
/// `force` releases a thin-pool metadata snapshot an earlier run left held.
pub fn diff_live(snapshot: &str, since: Option<&str>, force: bool) -> Result<ChangeSet> {
    let new = probe(snapshot)?;
    let old = since.map(probe).transpose()?;
    diff_probed(&new, old.as_ref(), force)
}

/// [`diff_live`] on devices already probed (`send` needs the reports too; a probe of a COW
/// snapshot reads every dm device's table, tens of ioctls that cost seconds under QEMU/TCG).
pub fn diff_probed(new: &ProbeReport, old: Option<&ProbeReport>, force: bool) -> Result<ChangeSet> {
    match new.kind {
        DeviceKind::Thin => diff_thin(new, old, force),
        DeviceKind::CowSnapshot => diff_cow(new, old),
        kind => Err(not_a_snapshot(new, kind)),
    }
}

/// The bytes in `bytes` that thin device `dev` (probed) maps, reading only the pool metadata
/// that holds that range: for a full sync, what the device maps (the rest are holes). A grown
/// volume's part since its base goes through [`diff_and_mapped_probed`] instead.
/// `force` as for [`diff_live`]. Thin devices only.
pub fn mapped_probed(dev: &ProbeReport, bytes: Range<u64>, force: bool) -> Result<ChangeSet> {
    let (thin, pool) = thin_parts(dev)?;
    let tmeta = PathBuf::from("/dev/mapper").join(&pool.metadata_device);
    crate::thin::live::mapped_in_pool_device(&pool.pool_device, &tmeta, thin.dev_id, bytes, force)
}

/// The thin device and pool of a thin snapshot's report.
fn thin_parts(dev: &ProbeReport) -> Result<(&ThinInfo, &PoolInfo)> {
    match (&dev.thin, &dev.pool) {
        (Some(thin), Some(pool)) => Ok((thin, pool)),
        _ => Err(not_a_snapshot(dev, dev.kind)),
    }
}

fn diff_thin(new: &ProbeReport, old: Option<&ProbeReport>, force: bool) -> Result<ChangeSet> {
    let (thin, pool) = thin_parts(new)?;
    let old_id = old.map(|o| id_in_pool(o, pool, new)).transpose()?;
    let tmeta = PathBuf::from("/dev/mapper").join(&pool.metadata_device);
    crate::thin::live::diff_pool_devices(&pool.pool_device, &tmeta, old_id, thin.dev_id, force)
}

/// [`diff_probed`] of thin snapshot `new` since `old`, and [`mapped_probed`] of `new` in
/// `grown` (its part past `old`'s size), both read from one metadata snapshot of the pool:
/// one point in time, one reserve and release. Thin snapshots only.
pub fn diff_and_mapped_probed(
    new: &ProbeReport,
    old: &ProbeReport,
    grown: Range<u64>,
    force: bool,
) -> Result<(ChangeSet, ChangeSet)> {
    let (thin, pool) = thin_parts(new)?;
    let old_id = id_in_pool(old, pool, new)?;
    let tmeta = PathBuf::from("/dev/mapper").join(&pool.metadata_device);
    crate::thin::live::diff_and_mapped_in_pool_devices(
        &pool.pool_device,
        &tmeta,
        old_id,
        thin.dev_id,
        grown,
        force,
    )
}

/// The device id of `old`, which must be a thin snapshot in `pool`, the pool of `new`.
fn id_in_pool(old: &ProbeReport, pool: &PoolInfo, new: &ProbeReport) -> Result<u64> {
    match (&old.thin, &old.pool) {
        (Some(t), Some(p)) if p.pool_device == pool.pool_device => Ok(t.dev_id),
        (Some(_), Some(p)) => Err(Error::Unusable {
            source_name: old.device.clone(),
            reason: format!(
                "is in thin pool {}, but {} is in {}: --since must name a snapshot in the \
                 same pool",
                p.pool_device, new.device, pool.pool_device
            ),
        }),
        _ => Err(mismatch(old, "a thin snapshot", new)),
    }
}

fn diff_cow(new: &ProbeReport, old: Option<&ProbeReport>) -> Result<ChangeSet> {
    let Some(new_snap) = &new.snapshot else {
        return Err(not_a_snapshot(new, new.kind));
    };
    // The store that lists the changes is the older snapshot's.
    let store_owner = match old {
        None => new_snap,
        Some(o) => match &o.snapshot {
            Some(s) if s.origin_real == new_snap.origin_real => s,
            Some(s) => {
                return Err(Error::Unusable {
                    source_name: o.device.clone(),
                    reason: format!(
                        "is a snapshot of {}, but {} is a snapshot of {}: --since must name an \
                         older snapshot of the same origin",
                        s.origin.as_deref().unwrap_or(&s.origin_real),
                        new.device,
                        new_snap.origin.as_deref().unwrap_or(&new_snap.origin_real)
                    ),
                })
            }
            None => return Err(mismatch(o, "a classic (COW) snapshot", new)),
        },
    };
    crate::cow::changes_from_file(&PathBuf::from("/dev/mapper").join(&store_owner.cow_device))
}

fn not_a_snapshot(dev: &ProbeReport, kind: DeviceKind) -> Error {
    Error::Unusable {
        source_name: dev.device.clone(),
        reason: format!(
            "is a {} device, not a snapshot: name a thin or classic snapshot LV (`lvs` shows \
             them), or compare plain devices with `lvmsync diff --base OLD NEW`",
            kind.as_str()
        ),
    }
}

fn mismatch(old: &ProbeReport, wanted: &str, new: &ProbeReport) -> Error {
    Error::Unusable {
        source_name: old.device.clone(),
        reason: format!(
            "is a {} device, but {} is {wanted}: --since must name a snapshot of the same kind",
            old.kind.as_str(),
            new.device
        ),
    }
}
