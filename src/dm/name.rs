//! Names: what the user typed (`vg/lv`, `/dev/vg/lv`, `/dev/mapper/<name>`, a dm name), LVM's
//! dm name mangling, and the LVM UUIDs inside a dm UUID.
//!
//! LVM names a dm device `<vg>-<lv>[-<layer>]` with every dash *inside* the VG and LV names
//! doubled (`my-vg/my-lv` → `my--vg-my--lv`), so a single dash is always a separator. These are
//! pure functions over strings, tested on the host.

use crate::error::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;

/// How the user named a device on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceArg {
    /// An LVM logical volume `vg/lv` (no leading `/`).
    Lv {
        /// Volume group name.
        vg: String,
        /// Logical volume name.
        lv: String,
    },
    /// A device-mapper name as listed by `dmsetup ls` (no `/` at all).
    DmName(String),
    /// A filesystem path (`/dev/vg/lv`, `/dev/mapper/x`, `/dev/dm-3`, `./disk.img`, ...).
    Path(PathBuf),
}

/// Classify a device argument; `vg/lv` names are checked against LVM's naming rules.
pub fn parse_device_arg(arg: &str) -> Result<DeviceArg> {
    if arg.is_empty() {
        return Err(Error::InvalidArgument("empty device name".into()));
    }
    if arg.starts_with('/') || arg.starts_with("./") || arg.starts_with("../") {
        return Ok(DeviceArg::Path(PathBuf::from(arg)));
    }
    match arg.split_once('/') {
        None => Ok(DeviceArg::DmName(arg.to_string())),
        Some((vg, lv)) if !lv.contains('/') && valid_lvm_name(vg) && valid_lvm_name(lv) => {
            Ok(DeviceArg::Lv {
                vg: vg.to_string(),
                lv: lv.to_string(),
            })
        }
        Some(_) => Err(Error::InvalidArgument(format!(
            "{arg}: not a device name: use vg/lv, /dev/vg/lv, /dev/mapper/<name> or ./relative/path"
        ))),
    }
}

/// True for names LVM accepts for a VG or LV: `[A-Za-z0-9+_.-]`, not starting with `-`,
/// not `.` or `..`.
pub fn valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+_.-".contains(&b))
}

/// The dm name LVM gives LV `lv` of VG `vg`: dashes inside each name doubled, joined by `-`.
pub fn lv_dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// An LVM dm name split back into its parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LvName {
    /// Volume group name (dashes un-doubled).
    pub vg: String,
    /// Logical volume name (dashes un-doubled).
    pub lv: String,
    /// LVM's layer suffix (`real`, `cow`, `tpool`, `_tmeta` is part of the LV name), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

impl std::fmt::Display for LvName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.vg, self.lv)
    }
}

/// Split a dm name made by LVM (`vg-lv[-layer]`, dashes in names doubled) into its parts;
/// `None` when it does not have that shape (a dm device LVM did not make).
pub fn split_lv_dm_name(dm_name: &str) -> Option<LvName> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = dm_name.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '-' {
            cur.push(c);
        } else if chars.peek() == Some(&'-') {
            chars.next();
            cur.push('-');
        } else {
            parts.push(std::mem::take(&mut cur));
        }
    }
    parts.push(cur);
    let mut parts = parts.into_iter();
    let (vg, lv, layer) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(vg), Some(lv), layer, None) => (vg, lv, layer),
        _ => return None,
    };
    (valid_lvm_name(&vg) && valid_lvm_name(&lv)).then_some(LvName { vg, lv, layer })
}

/// The VG and LV UUIDs LVM stores in a dm UUID (`LVM-<32 chars VG><32 chars LV>[-layer]`),
/// each formatted the way `vgs`/`lvs` print them (`xxxxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxxxx`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LvmUuids {
    /// The volume group's UUID.
    pub vg_uuid: String,
    /// The logical volume's UUID.
    pub lv_uuid: String,
}

/// Extract the LVM UUIDs from a dm UUID; `None` for a dm device LVM did not make.
pub fn lvm_uuids(dm_uuid: &str) -> Option<LvmUuids> {
    let rest = dm_uuid.strip_prefix("LVM-")?;
    let ids = rest.get(..64)?;
    if !ids.bytes().all(|b| b.is_ascii_alphanumeric())
        || !matches!(rest.as_bytes().get(64), None | Some(b'-'))
    {
        return None;
    }
    Some(LvmUuids {
        vg_uuid: dashed_uuid(&ids[..32]),
        lv_uuid: dashed_uuid(&ids[32..]),
    })
}

/// LVM's printed form of a 32-character UUID: groups of 6-4-4-4-4-4-6.
fn dashed_uuid(id: &str) -> String {
    let mut out = String::with_capacity(38);
    let mut pos = 0;
    for (i, len) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.push_str(&id[pos..pos + len]);
        pos += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_device_args() {
        assert_eq!(
            parse_device_arg("vg0/data").unwrap(),
            DeviceArg::Lv {
                vg: "vg0".into(),
                lv: "data".into()
            }
        );
        assert_eq!(
            parse_device_arg("/dev/vg0/data").unwrap(),
            DeviceArg::Path("/dev/vg0/data".into())
        );
        assert_eq!(
            parse_device_arg("vg0-data").unwrap(),
            DeviceArg::DmName("vg0-data".into())
        );
        assert_eq!(
            parse_device_arg("./img").unwrap(),
            DeviceArg::Path("./img".into())
        );
        assert!(parse_device_arg("a/b/c").is_err());
        assert!(parse_device_arg("vg/-lv").is_err());
        assert!(parse_device_arg("").is_err());
    }

    #[test]
    fn mangles_and_splits_dashes() {
        assert_eq!(lv_dm_name("vg", "lv"), "vg-lv");
        assert_eq!(lv_dm_name("my-vg", "my--lv"), "my--vg-my----lv");
        for (vg, lv) in [
            ("vg", "lv"),
            ("my-vg", "my--lv"),
            ("a-", "b-c"),
            ("x.y_z+", "lv_tmeta"),
        ] {
            let split = split_lv_dm_name(&lv_dm_name(vg, lv)).unwrap();
            assert_eq!(
                (split.vg.as_str(), split.lv.as_str(), split.layer),
                (vg, lv, None)
            );
        }
        let tpool = split_lv_dm_name("my--vg-pool-tpool").unwrap();
        assert_eq!(tpool.to_string(), "my-vg/pool");
        assert_eq!(tpool.layer.as_deref(), Some("tpool"));
        assert_eq!(split_lv_dm_name("plainname"), None);
        assert_eq!(split_lv_dm_name("a-b-c-d"), None);
    }

    #[test]
    fn extracts_lvm_uuids() {
        let vg = "AbCdEf0123456789AbCdEf0123456789";
        let lv = "ZyXwVu9876543210ZyXwVu9876543210";
        let u = lvm_uuids(&format!("LVM-{vg}{lv}-real")).unwrap();
        assert_eq!(u.vg_uuid, "AbCdEf-0123-4567-89Ab-CdEf-0123-456789");
        assert_eq!(u.lv_uuid, "ZyXwVu-9876-5432-10Zy-XwVu-9876-543210");
        assert!(lvm_uuids(&format!("LVM-{vg}{lv}")).is_some());
        assert_eq!(lvm_uuids("CRYPT-LUKS2-abc"), None);
        assert_eq!(lvm_uuids("LVM-short"), None);
        assert_eq!(lvm_uuids(&format!("LVM-{vg}{lv}x")), None);
    }
}
