//! Resolve what the user typed to an active dm device, through sysfs (no root needed), so a
//! missing device, a path that is not a dm device, and a permission problem each get their own
//! message naming the device and what to do.

use super::name::{lv_dm_name, parse_device_arg, DeviceArg};
use super::table::DevNum;
use crate::error::{Error, Result};
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// An active dm device found for a user's device argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The dm name.
    pub dm_name: String,
    /// Its device number.
    pub devnum: DevNum,
}

/// Find the active dm device named by `arg` (`vg/lv`, `/dev/vg/lv`, `/dev/mapper/x`, a dm name).
pub fn resolve(arg: &str) -> Result<Resolved> {
    match parse_device_arg(arg)? {
        DeviceArg::Lv { vg, lv } => {
            let dm_name = lv_dm_name(&vg, &lv);
            find_by_name(&dm_name)?.ok_or_else(|| Error::Device {
                device: arg.to_string(),
                detail: format!(
                    "no such active logical volume (no device-mapper device '{dm_name}'): check \
                     the name with `lvs`, activate it with `lvchange -ay {vg}/{lv}` (thin \
                     snapshots: `lvchange -ay -K {vg}/{lv}`)"
                ),
            })
        }
        DeviceArg::DmName(name) => match find_by_name(&name)? {
            Some(r) => Ok(r),
            None if Path::new(&name).exists() => resolve_path(arg, Path::new(&name)),
            None => Err(Error::Device {
                device: arg.to_string(),
                detail: "no such device-mapper device (see `dmsetup ls`); name LVs as vg/lv".into(),
            }),
        },
        DeviceArg::Path(p) => resolve_path(arg, &p),
    }
}

fn resolve_path(arg: &str, path: &Path) -> Result<Resolved> {
    let err = |detail: String| Error::Device {
        device: arg.to_string(),
        detail,
    };
    let meta =
        match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(err(
                "no such device: check the path (LVs are /dev/<vg>/<lv> or /dev/mapper/<vg>-<lv>; \
                 `lvs` lists them)"
                    .into(),
            )),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return Err(err("permission denied: run lvmsync as root (sudo)".into()))
            }
            Err(e) => return Err(Error::io(path, e)),
        };
    let not_dm = "lvmsync probe and diff read snapshot metadata from device-mapper (LVM) \
                  devices; compare plain images or devices with `lvmsync diff --base OLD NEW`";
    if !meta.file_type().is_block_device() {
        let what = if meta.is_file() {
            "a regular file"
        } else if meta.is_dir() {
            "a directory"
        } else {
            "not a block device"
        };
        return Err(err(format!(
            "not a device-mapper device ({what}): {not_dm}"
        )));
    }
    let rdev = meta.rdev();
    let devnum = DevNum {
        major: nix::sys::stat::major(rdev) as u32,
        minor: nix::sys::stat::minor(rdev) as u32,
    };
    let dm_name_file = format!("/sys/dev/block/{devnum}/dm/name");
    match std::fs::read_to_string(&dm_name_file) {
        Ok(name) => Ok(Resolved { dm_name: name.trim().to_string(), devnum }),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(err(format!(
            "not a device-mapper device (block device {devnum}, e.g. a disk or loop device): {not_dm}"
        ))),
        Err(e) => Err(Error::io(dm_name_file, e)),
    }
}

/// Look an active dm device up by name in /sys/block/dm-*/dm/name.
fn find_by_name(name: &str) -> Result<Option<Resolved>> {
    let entries = match std::fs::read_dir("/sys/block") {
        Ok(e) => e,
        Err(e) => return Err(Error::io("/sys/block", e)),
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(found) = std::fs::read_to_string(dir.join("dm/name")) else {
            continue;
        };
        if found.trim() != name {
            continue;
        }
        let dev =
            std::fs::read_to_string(dir.join("dev")).map_err(|e| Error::io(dir.join("dev"), e))?;
        return Ok(Some(Resolved {
            dm_name: name.to_string(),
            devnum: dev.trim().parse()?,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(arg: &str) -> String {
        match resolve(arg) {
            Err(Error::Device { device, detail }) => {
                assert_eq!(device, arg);
                detail
            }
            other => panic!("{arg}: {other:?}"),
        }
    }

    #[test]
    fn missing_and_non_dm_paths_get_their_own_messages() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("image.raw");
        std::fs::write(&file, b"data").unwrap();
        let file = file.to_str().unwrap();
        assert!(detail(file).starts_with("not a device-mapper device (a regular file)"));
        let d = dir.path().to_str().unwrap();
        assert!(detail(d).starts_with("not a device-mapper device (a directory)"));
        let missing = format!("{d}/nope");
        assert!(detail(&missing).starts_with("no such device"));
        // /dev/null is a character device: not dm either.
        assert!(detail("/dev/null").contains("not a block device"));
    }

    #[test]
    fn unknown_lv_and_dm_names_say_how_to_find_them() {
        assert!(detail("no-such-vg-7/lv").contains("lvchange -ay no-such-vg-7/lv"));
        assert!(detail("no-such-dm-name-7").contains("dmsetup ls"));
    }
}
