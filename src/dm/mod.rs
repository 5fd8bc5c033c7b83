//! Device discovery through device-mapper and the lvm2 CLI.
//!
//! The only module that talks to the kernel about devices. Layers, one concept per file:
//!
//! - [`name`]: user names (`vg/lv`, `/dev/vg/lv`, `/dev/mapper/<name>`), LVM's dm name mangling
//!   (dashes inside VG/LV names doubled) and the LVM UUIDs inside a dm UUID. Pure.
//! - [`table`], [`status`]: typed table and status lines of the `linear`, `snapshot`,
//!   `snapshot-origin`, `thin-pool` and `thin` targets. Pure, unit-tested on the host.
//! - [`resolve`]: a user's device argument to an active dm device, through sysfs, with distinct
//!   errors for a missing device, a non-dm device and a permission problem.
//! - [`device`]: the `devicemapper` crate calls (list, table, status, target messages).
//! - [`probe`]: what a device is (plain, origin, cow-snapshot, thin, thin-pool) and where its
//!   change metadata lives; `lvmsync probe` prints it.
//! - [`lvm`]: creating and removing snapshots through `lvcreate -s` / `lvremove`.
//! - [`live`]: `lvmsync diff <snapshot> [--since <older>]`, dispatching to the thin or COW reader.
//! - [`zeroing`]: whether a destination is a thin LV, and whether its pool zeroes new blocks
//!   (the receiver need not write zeroes there) or skips that (`-Zn`: it writes whole blocks).
//!
//! Everything except the pure parsers needs device-mapper (and usually root); those parts are
//! tested in the QEMU guest (`vm-tests/`).

pub mod device;
pub mod live;
pub mod lvm;
pub mod name;
pub mod probe;
pub mod resolve;
pub mod status;
pub mod table;
pub mod zeroing;

pub use device::{DmContext, DmDevice};
pub use live::{diff_and_mapped_probed, diff_live, diff_probed, mapped_probed};
pub use probe::{probe, DeviceKind, ProbeReport};
pub use table::{DevNum, Target};
