//! Guest-only tests for lvmsync and the fixtures they share.
//!
//! The tests live in ONE test binary, `tests/guest/main.rs` (one module per scenario:
//! `probe`, and later `thin_diff`, `cow_diff`, ...), so a run boots the QEMU guest once:
//!
//! ```text
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/vm-tests/run --" \
//!     cargo test -p lvmsync-vm-tests -- --test-threads=1
//! ```
//!
//! On the host every test refuses to run ([`require_guest`] panics) instead of passing
//! silently. The fixtures here create loop devices, volume groups and snapshots, and undo all
//! of it in `Drop`, also when the test panics.

pub mod fixtures;

pub use fixtures::{
    lvmsync, lvmsync_bin, require_guest, run, run_status, write_at, LoopDevice, VolumeGroup,
};
