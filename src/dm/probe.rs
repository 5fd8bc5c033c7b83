//! What a device is, as lvmsync sees it: kind (plain, origin, cow-snapshot, thin, thin-pool),
//! size, identity, and for snapshots where their changes are recorded (origin and COW store,
//! or pool, thin device id and metadata device).

use super::device::{DmContext, DmDevice};
use super::name::{lvm_uuids, split_lv_dm_name, LvName, LvmUuids};
use super::resolve::resolve;
use super::status::{SnapshotStatus, ThinPoolStatus, ThinStatus};
use super::table::{DevNum, SnapshotStore, TableLine, Target};
use crate::error::{Error, Result};
use crate::units::Bytes;
use serde::Serialize;
use std::collections::HashMap;

/// The kind of a device, by its dm table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// Anything without snapshot metadata (linear, striped, ...).
    Plain,
    /// The origin of classic snapshots (`snapshot-origin`).
    Origin,
    /// A classic snapshot with a COW exception store (`snapshot`).
    CowSnapshot,
    /// A thin volume or thin snapshot (`thin`).
    Thin,
    /// A thin pool (`thin-pool`, or LVM's linear placeholder over its `-tpool`).
    ThinPool,
}

impl DeviceKind {
    /// The kebab-case name printed by `lvmsync probe`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Plain => "plain",
            DeviceKind::Origin => "origin",
            DeviceKind::CowSnapshot => "cow-snapshot",
            DeviceKind::Thin => "thin",
            DeviceKind::ThinPool => "thin-pool",
        }
    }
}

/// A classic snapshot: where its origin and exception store are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// dm name of the origin LV (the `snapshot-origin` device), if it is active.
    pub origin: Option<String>,
    /// dm name of the origin's hidden data device (`<vg>-<lv>-real`).
    pub origin_real: String,
    /// dm name of the exception store device (`<vg>-<snap>-cow`).
    pub cow_device: String,
    /// Chunk size: the granularity of its change tracking.
    pub chunk_size: Bytes,
    /// Persistent or transient store.
    pub store: SnapshotStore,
    /// Usage, or why it is no longer valid.
    pub status: SnapshotStatus,
}

/// A thin pool: its devices, block size and metadata state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolInfo {
    /// dm name of the device with the `thin-pool` table (`<vg>-<pool>-tpool` under LVM).
    pub pool_device: String,
    /// dm name of the metadata device (`<vg>-<pool>_tmeta`).
    pub metadata_device: String,
    /// dm name of the data device (`<vg>-<pool>_tdata`).
    pub data_device: String,
    /// Data block size: the granularity of its change tracking.
    pub block_size: Bytes,
    /// Transaction id, usage and held metadata root.
    pub status: ThinPoolStatus,
}

/// A thin volume or snapshot: its id inside the pool's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThinInfo {
    /// Thin device id (what `thin_delta --snap1/--snap2` and `lvs -o thin_id` use).
    pub dev_id: u64,
    /// Mapped sectors.
    pub status: ThinStatus,
}

/// Everything `lvmsync probe` reports about one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    /// The device as the user named it.
    pub device: String,
    /// Its kind.
    pub kind: DeviceKind,
    /// Size in bytes.
    pub size: Bytes,
    /// dm name.
    pub dm_name: String,
    /// dm UUID.
    pub dm_uuid: Option<String>,
    /// Block device number.
    pub devnum: DevNum,
    /// VG/LV name, when LVM made the device.
    pub lv: Option<LvName>,
    /// VG and LV UUIDs, when LVM made the device.
    pub lvm_uuids: Option<LvmUuids>,
    /// Classic snapshot details (kind `cow-snapshot`).
    pub snapshot: Option<SnapshotInfo>,
    /// Classic snapshots of this origin (kind `origin`), by dm name.
    pub snapshots: Option<Vec<String>>,
    /// Thin device details (kind `thin`).
    pub thin: Option<ThinInfo>,
    /// Pool details (kinds `thin` and `thin-pool`).
    pub pool: Option<PoolInfo>,
    /// The raw typed table.
    pub table: Vec<TableLine>,
}

/// Probe the device named by `arg` (`vg/lv`, `/dev/vg/lv`, `/dev/mapper/<name>`, dm name).
pub fn probe(arg: &str) -> Result<ProbeReport> {
    let resolved = resolve(arg)?;
    let ctx = DmContext::open()?;
    let dev = ctx.device(&resolved.dm_name)?;
    let names: HashMap<DevNum, String> = ctx.list()?.into_iter().map(|(n, d)| (d, n)).collect();
    let name_of = |d: &DevNum| names.get(d).cloned().unwrap_or_else(|| d.to_string());
    let mut report = ProbeReport {
        device: arg.to_string(),
        kind: DeviceKind::Plain,
        size: sectors_to_bytes(&dev, dev.size())?,
        dm_name: dev.name.clone(),
        dm_uuid: dev.uuid.clone(),
        devnum: dev.devnum,
        lv: split_lv_dm_name(&dev.name),
        lvm_uuids: dev.uuid.as_deref().and_then(lvm_uuids),
        snapshot: None,
        snapshots: None,
        thin: None,
        pool: None,
        table: dev.table.clone(),
    };
    match dev.single_target() {
        Some(&Target::Snapshot {
            origin,
            cow,
            store,
            chunk_size,
            ..
        }) => {
            report.kind = DeviceKind::CowSnapshot;
            let origin_lv = find_devices(
                &ctx,
                &names,
                |t| matches!(t, Target::SnapshotOrigin { real } if *real == origin),
            )?;
            report.snapshot = Some(SnapshotInfo {
                origin: origin_lv.into_iter().next(),
                origin_real: name_of(&origin),
                cow_device: name_of(&cow),
                chunk_size: sectors_to_bytes(&dev, chunk_size)?,
                store,
                status: dev.snapshot_status()?,
            });
        }
        Some(&Target::SnapshotOrigin { real }) => {
            report.kind = DeviceKind::Origin;
            let snaps = find_devices(
                &ctx,
                &names,
                |t| matches!(t, Target::Snapshot { origin, .. } if *origin == real),
            )?;
            report.snapshots = Some(snaps);
        }
        Some(&Target::Thin { pool, dev_id, .. }) => {
            report.kind = DeviceKind::Thin;
            report.thin = Some(ThinInfo {
                dev_id,
                status: dev.thin_status()?,
            });
            report.pool = Some(pool_info(&ctx.device(&name_of(&pool))?, &name_of)?);
        }
        Some(Target::ThinPool { .. }) => {
            report.kind = DeviceKind::ThinPool;
            report.pool = Some(pool_info(&dev, &name_of)?);
        }
        Some(Target::Linear { device, .. }) if names.contains_key(device) => {
            // LVM keeps `<vg>-<pool>` as a linear placeholder over `<vg>-<pool>-tpool`.
            let under = ctx.device(&name_of(device))?;
            if let Some(Target::ThinPool { .. }) = under.single_target() {
                report.kind = DeviceKind::ThinPool;
                report.pool = Some(pool_info(&under, &name_of)?);
            }
        }
        _ => {}
    }
    Ok(report)
}

/// Pool details of a device whose table is one `thin-pool` target.
fn pool_info(pool: &DmDevice, name_of: &dyn Fn(&DevNum) -> String) -> Result<PoolInfo> {
    match pool.single_target() {
        Some(Target::ThinPool {
            metadata,
            data,
            block_size,
            ..
        }) => Ok(PoolInfo {
            pool_device: pool.name.clone(),
            metadata_device: name_of(metadata),
            data_device: name_of(data),
            block_size: sectors_to_bytes(pool, *block_size)?,
            status: pool.thin_pool_status()?,
        }),
        _ => Err(Error::Device {
            device: pool.name.clone(),
            detail: "expected a thin-pool table".into(),
        }),
    }
}

/// Names of the dm devices whose single target matches `pred`, sorted.
fn find_devices(
    ctx: &DmContext,
    names: &HashMap<DevNum, String>,
    pred: impl Fn(&Target) -> bool,
) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for name in names.values() {
        // A device removed since the listing is simply not a match.
        let Ok(dev) = ctx.device(name) else { continue };
        if dev.single_target().is_some_and(&pred) {
            found.push(dev.name);
        }
    }
    found.sort();
    Ok(found)
}

fn sectors_to_bytes(dev: &DmDevice, s: crate::units::Sectors) -> Result<Bytes> {
    s.to_bytes().ok_or_else(|| Error::Device {
        device: dev.name.clone(),
        detail: format!("size {s} overflows"),
    })
}
