//! The guest test binary: every guest scenario is a module here, so one `cargo test` run boots
//! the QEMU guest once. Run through vm-tests/run (see docs/vm-tests.md):
//!
//! ```text
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/vm-tests/run --" \
//!     cargo test -p lvmsync-vm-tests -- --test-threads=1
//! ```
//!
//! Add a scenario as `mod <name>;` with its file beside this one; start each test with a
//! fixture from `lvmsync_vm_tests` (they refuse to run outside the guest).

mod busy_lv;
mod cow_diff;
mod grown_lv;
mod probe;
mod probe_errors;
mod stream_lv;
mod thin_diff;
