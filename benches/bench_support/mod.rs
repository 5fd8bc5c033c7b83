//! Helpers shared by the benches (included with `#[path]`, as they have no common crate).
#![allow(dead_code)]

/// The image size in MiB (`LVMSYNC_BENCH_MIB`, default 1024) and the number of interleaved
/// rounds (`LVMSYNC_BENCH_ROUNDS`, default 3); an unset or unparsable variable keeps its default.
pub fn mib_and_rounds() -> (u64, u64) {
    let env = |k: &str, d: u64| -> u64 {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (
        env("LVMSYNC_BENCH_MIB", 1024),
        env("LVMSYNC_BENCH_ROUNDS", 3),
    )
}
