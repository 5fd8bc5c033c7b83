//! Crash-test hooks: environment variables that make an apply slow, make the undo journal
//! lose unsynced writes on a kill like a disk losing power, or make the journaling thread
//! panic, so tests can kill or break the real binary at many points
//! (docs/stream-format.md, "Test-only hooks").
//!
//! They exist only in a build with the `test-hooks` cargo feature. `cargo test` turns it on
//! (the package's self dev-dependency in Cargo.toml) for the binary its tests drive; `cargo
//! build --release` and `cargo install` leave it off, and there every hook is a constant that
//! does nothing, whatever the environment holds. Such a build's `--version` says so
//! ([`VERSION`]), which is how test harnesses check that the binary they drive has them.

/// Words in `lvmsync --version` of a build with the hooks compiled in.
macro_rules! mark {
    () => {
        "test hooks compiled in"
    };
}

/// What `lvmsync --version` shows of a build with the hooks ([`VERSION`]); absent otherwise.
pub const MARK: &str = mark!();

/// The version `lvmsync --version` prints: the package version, plus [`MARK`] and the hooks'
/// names when they are compiled in, so nobody mistakes a test build for a production one.
#[cfg(feature = "test-hooks")]
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    mark!(),
    ": LVMSYNC_TEST_SLOW_MS, LVMSYNC_TEST_JOURNALING_PANICS; not for production)"
);
/// The version `lvmsync --version` prints: the package version (no test hooks in this build).
#[cfg(not(feature = "test-hooks"))]
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds to sleep after each applied extent or restored range, read once from
/// `LVMSYNC_TEST_SLOW_MS`; nonzero also makes every extent its own batch and the journal
/// volatile until synced. Zero (the default) disables it.
#[cfg(feature = "test-hooks")]
pub(super) fn slow_ms() -> u64 {
    static DELAY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        std::env::var("LVMSYNC_TEST_SLOW_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}
/// Always zero: this build has no test hooks.
#[cfg(not(feature = "test-hooks"))]
pub(super) const fn slow_ms() -> u64 {
    0
}

/// Sleep for [`slow_ms`] milliseconds (nothing unless the hook is set).
pub(super) fn delay() {
    let ms = slow_ms();
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// True when `LVMSYNC_TEST_JOURNALING_PANICS` is set (any value): the journaling thread then
/// panics when it would return (done, stopped or failed), so tests can check that every way
/// out of an apply reports the panic as an error instead of dying of it.
#[cfg(feature = "test-hooks")]
pub(super) fn journaling_panics() -> bool {
    std::env::var_os("LVMSYNC_TEST_JOURNALING_PANICS").is_some()
}
/// Always false: this build has no test hooks.
#[cfg(not(feature = "test-hooks"))]
pub(super) const fn journaling_panics() -> bool {
    false
}
