//! Talking to the kernel's device-mapper through the `devicemapper` crate: list devices, read
//! one device's table and status, send target messages.
//!
//! This is the only file that issues dm ioctls; everything it reads is handed to the pure
//! parsers in [`super::table`] and [`super::status`].

use super::status::{SnapshotStatus, ThinPoolStatus, ThinStatus};
use super::table::{DevNum, TableLine, Target};
use crate::error::{Error, Result};
use crate::units::Sectors;
use devicemapper::{DevId, DmFlags, DmName, DmOptions, DM};
use std::io::ErrorKind;

/// The dm control node every ioctl goes through.
pub const DM_CONTROL: &str = "/dev/mapper/control";

/// An open connection to device-mapper.
pub struct DmContext {
    dm: DM,
}

impl std::fmt::Debug for DmContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DmContext")
    }
}

/// One dm device: its identity, its typed table and the raw status of each target.
#[derive(Debug, Clone)]
pub struct DmDevice {
    /// The dm name (`vg-lv`, `vg-pool-tpool`, ...).
    pub name: String,
    /// The dm UUID (LVM's is `LVM-<vg uuid><lv uuid>[-layer]`), if set.
    pub uuid: Option<String>,
    /// Its block device number.
    pub devnum: DevNum,
    /// The table, one line per target.
    pub table: Vec<TableLine>,
    /// The status text of each target, in table order.
    pub status: Vec<String>,
}

impl DmDevice {
    /// Device size: the sum of its targets' lengths.
    pub fn size(&self) -> Sectors {
        Sectors(self.table.iter().map(|l| l.length.0).sum())
    }

    /// The target, when the table has exactly one (every device lvmsync reads from has one).
    pub fn single_target(&self) -> Option<&Target> {
        match self.table.as_slice() {
            [line] => Some(&line.target),
            _ => None,
        }
    }

    fn single_status(&self) -> Result<&str> {
        match (self.table.len(), self.status.first()) {
            (1, Some(s)) => Ok(s),
            _ => Err(Error::Device {
                device: self.name.clone(),
                detail: format!("expected one target, found {}", self.table.len()),
            }),
        }
    }

    /// The typed status of a `snapshot` device.
    pub fn snapshot_status(&self) -> Result<SnapshotStatus> {
        SnapshotStatus::parse(self.single_status()?)
    }

    /// The typed status of a `thin-pool` device (including the held metadata root).
    pub fn thin_pool_status(&self) -> Result<ThinPoolStatus> {
        ThinPoolStatus::parse(self.single_status()?)
    }

    /// The typed status of a `thin` device.
    pub fn thin_status(&self) -> Result<ThinStatus> {
        ThinStatus::parse(self.single_status()?)
    }
}

impl DmContext {
    /// Open device-mapper. Fails with what to do when dm is missing or the caller is not root.
    pub fn open() -> Result<Self> {
        if let Err(e) = std::fs::File::open(DM_CONTROL) {
            let detail = match e.kind() {
                ErrorKind::NotFound => {
                    "device-mapper is not available (no /dev/mapper/control): load it with \
                     `modprobe dm-mod`, or use `lvmsync diff --base` for plain images"
                        .to_string()
                }
                ErrorKind::PermissionDenied => {
                    "permission denied: reading device-mapper tables needs root; run lvmsync as root (sudo)"
                        .to_string()
                }
                _ => format!("cannot open: {e}"),
            };
            return Err(Error::Device {
                device: DM_CONTROL.into(),
                detail,
            });
        }
        let dm = DM::new().map_err(|e| Error::Device {
            device: DM_CONTROL.into(),
            detail: e.to_string(),
        })?;
        Ok(DmContext { dm })
    }

    /// All dm devices: name and device number.
    pub fn list(&self) -> Result<Vec<(String, DevNum)>> {
        let devices = self
            .dm
            .list_devices()
            .map_err(|e| dm_err("device-mapper", e))?;
        Ok(devices
            .into_iter()
            .map(|(name, dev, _)| {
                let devnum = DevNum {
                    major: dev.major,
                    minor: dev.minor,
                };
                (name.to_string(), devnum)
            })
            .collect())
    }

    /// Read the dm device `name`: identity, table and status (status without flushing, so
    /// probing never forces a thin-pool metadata commit).
    pub fn device(&self, name: &str) -> Result<DmDevice> {
        let dm_name =
            DmName::new(name).map_err(|e| Error::InvalidArgument(format!("{name}: {e}")))?;
        let id = DevId::Name(dm_name);
        let (info, table) = self
            .dm
            .table_status(
                &id,
                DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE),
            )
            .map_err(|e| dm_err(name, e))?;
        let (_, status) = self
            .dm
            .table_status(&id, DmOptions::default().set_flags(DmFlags::DM_NOFLUSH))
            .map_err(|e| dm_err(name, e))?;
        let table = table
            .into_iter()
            .map(|(start, length, ty, params)| {
                Ok(TableLine {
                    start: Sectors(start),
                    length: Sectors(length),
                    target: Target::parse(&ty, &params)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dev = info.device();
        Ok(DmDevice {
            name: name.to_string(),
            uuid: info.uuid().map(|u| u.to_string()),
            devnum: DevNum {
                major: dev.major,
                minor: dev.minor,
            },
            table,
            status: status.into_iter().map(|(_, _, _, s)| s).collect(),
        })
    }

    /// Send target message `msg` (e.g. `reserve_metadata_snap`) to sector 0 of device `name`;
    /// returns the target's reply text, if any.
    pub fn message(&self, name: &str, msg: &str) -> Result<Option<String>> {
        let dm_name =
            DmName::new(name).map_err(|e| Error::InvalidArgument(format!("{name}: {e}")))?;
        let (_, reply) = self
            .dm
            .target_msg(&DevId::Name(dm_name), Some(0), msg)
            .map_err(|e| dm_err(name, e))?;
        Ok(reply)
    }
}

fn dm_err(device: &str, e: devicemapper::DmError) -> Error {
    Error::Device {
        device: device.to_string(),
        detail: e.to_string(),
    }
}
