//! Claiming a destination for writing: a block device is opened with `O_EXCL`, which Linux
//! refuses with `EBUSY` while the device is mounted or held by device-mapper (LVM), md, or
//! another exclusive opener — the same check `mkfs` makes. Writing under any of those would
//! corrupt a live filesystem or volume, so the refusal is final (there is no override; why:
//! `docs/stream-format.md`, "Busy destinations").
//!
//! The claim lasts as long as the file descriptor: while an apply holds it, nothing can mount
//! or otherwise claim the device. Only writers claim; reads (send, diff, verify without
//! `--repair`) open devices without `O_EXCL`, so a mounted snapshot can still be a source.
//! Regular files have no such claim and open as before.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Open `path` read-write, claiming it exclusively if it is a block device; with `create`, a
/// missing regular file is created empty. Returns the file and whether it is a block device.
pub(super) fn open_claimed(path: &Path, create: bool) -> Result<(File, bool)> {
    let block = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    let mut opts = OpenOptions::new();
    opts.read(true).write(true);
    if block {
        opts.custom_flags(nix::libc::O_EXCL);
    } else {
        opts.create(create).truncate(false);
    }
    let file = opts.open(path).map_err(|e| {
        if block && e.raw_os_error() == Some(nix::libc::EBUSY) {
            busy(path)
        } else {
            Error::io(path, e)
        }
    })?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    let is_block = meta.file_type().is_block_device();
    if is_block && !block {
        // Replaced by a device node between the check and the open: opened unclaimed.
        return Err(Error::Destination {
            dest: path.display().to_string(),
            detail: "turned into a block device while it was being opened; retry".into(),
        });
    }
    Ok((file, is_block))
}

/// The error for a block device that refused the exclusive open, with what is known about
/// who holds it and how to find out and fix it.
fn busy(path: &Path) -> Error {
    let p = path.display();
    let mut known = Vec::new();
    if let Ok(rdev) = std::fs::metadata(path).map(|m| m.rdev()) {
        let id = format!(
            "{}:{}",
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev)
        );
        let mounts = mount_points(&id);
        if !mounts.is_empty() {
            known.push(format!("mounted on {}", mounts.join(", ")));
        }
        let holders = holders(&id);
        if !holders.is_empty() {
            known.push(format!("held by {}", holders.join(", ")));
        }
    }
    let known = if known.is_empty() {
        String::new()
    } else {
        format!(" ({})", known.join("; "))
    };
    Error::Destination {
        dest: p.to_string(),
        detail: format!(
            "is mounted or in use{known}, so nothing was written: writing under a mounted \
             filesystem, an active LV/dm device, an md array or another exclusive user \
             (perhaps another lvmsync) would corrupt it. Find out with `findmnt --source {p}`, \
             `lsblk {p}` and `dmsetup ls --tree`; then unmount it (umount), deactivate what \
             holds it (lvchange -an, vgchange -an, dmsetup remove, mdadm --stop) or stop the \
             program that holds it, and retry"
        ),
    }
}

/// Mount points of the device `major:minor` in this mount namespace (`/proc/self/mountinfo`:
/// the third field is the device, the fifth the mount point).
fn mount_points(id: &str) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&id)).then(|| f.get(4).map(|m| m.to_string()))?
        })
        .collect()
}

/// Block devices stacked on the device `major:minor` (sysfs `holders`), with their dm names.
fn holders(id: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/sys/dev/block/{id}/holders")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match std::fs::read_to_string(format!("/sys/block/{name}/dm/name")) {
                Ok(dm) => format!("{name} ({})", dm.trim()),
                Err(_) => name,
            }
        })
        .collect();
    names.sort();
    names
}
