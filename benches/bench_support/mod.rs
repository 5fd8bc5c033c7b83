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

/// The next xorshift64 pseudo-random number from `state` (advanced).
pub fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Fill `buf` with xorshift64 pseudo-random bytes from `state` (advanced): incompressible
/// test data, fast to make, the same for every run.
pub fn fill_random(buf: &mut [u8], state: &mut u64) {
    for c in buf.chunks_mut(8) {
        c.copy_from_slice(&next_random(state).to_le_bytes()[..c.len()]);
    }
}
