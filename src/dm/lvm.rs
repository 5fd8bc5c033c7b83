//! Creating and removing LVM snapshots through the lvm2 command line.
//!
//! Snapshots are made with `lvcreate -s` and removed with `lvremove`, never by loading dm
//! tables ourselves, so LVM's own metadata (VG descriptor, thin device ids, transaction ids)
//! always matches the kernel's devices.

use crate::error::{Error, Result};
use crate::units::Bytes;
use std::process::Command;

/// Create a classic (COW) snapshot `vg/<name>` of `vg/lv` with an exception store of
/// `cow_size` bytes and the given chunk size.
pub fn create_cow_snapshot(
    origin: &str,
    name: &str,
    cow_size: Bytes,
    chunk_size: Bytes,
) -> Result<()> {
    run_lvm(
        origin,
        &[
            "lvcreate",
            "--yes",
            "--snapshot",
            "--size",
            &format!("{}b", cow_size.0),
            "--chunksize",
            &format!("{}b", chunk_size.0),
            "--name",
            name,
            origin,
        ],
    )
}

/// Create a thin snapshot `vg/<name>` of thin LV `vg/lv`, activated (LVM would otherwise set
/// the activation-skip flag on it, leaving no dm device to read).
pub fn create_thin_snapshot(origin: &str, name: &str) -> Result<()> {
    run_lvm(
        origin,
        &[
            "lvcreate",
            "--yes",
            "--snapshot",
            "--setactivationskip",
            "n",
            "--name",
            name,
            origin,
        ],
    )
}

/// Remove LV `vg/lv` (a snapshot, usually) without prompting.
pub fn remove_lv(lv: &str) -> Result<()> {
    run_lvm(lv, &["lvremove", "--yes", "--force", lv])
}

/// Run one lvm2 command; its stderr becomes the error message.
fn run_lvm(device: &str, argv: &[&str]) -> Result<()> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .map_err(|e| Error::Device {
            device: device.to_string(),
            detail: format!("cannot run {}: {e} (install lvm2)", argv[0]),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Device {
        device: device.to_string(),
        detail: format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}
