//! The binary users build (`cargo build --release`, `cargo install`: no `test-hooks` feature)
//! ignores the crash-test hooks: with every `LVMSYNC_TEST_*` variable set, an apply neither
//! sleeps nor panics and leaves exactly the target, and `--version` shows no test-hooks mark.
//!
//! `cargo test` builds `lvmsync` WITH the hooks (for the crash tests), so this test drives
//! another build, named by `LVMSYNC_DEFAULT_BIN`: scripts/test.sh makes one with `cargo build
//! --bin lvmsync` (the hooks depend on the feature only, so a debug build without it has
//! them exactly as absent as a release build) and runs this test with `--ignored`.

mod stream_util;
use lvmsync::journal::test_hooks::MARK;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stream_util::*;

const SIZE: usize = 4 << 20;
/// Far longer than the apply takes: a live `LVMSYNC_TEST_SLOW_MS` hook sleeps 10 minutes
/// after the first extent, an inert one not at all.
const SLOW_MS: &str = "600000";
/// How long the apply may take before the test calls the slow hook live.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
#[ignore = "needs LVMSYNC_DEFAULT_BIN=<lvmsync built without --features test-hooks>; \
            scripts/test.sh runs it"]
fn default_build_ignores_test_hooks() {
    let bin = std::env::var_os("LVMSYNC_DEFAULT_BIN").expect(
        "LVMSYNC_DEFAULT_BIN must name an lvmsync built without the test-hooks feature \
         (cargo build --bin lvmsync; copy target/debug/lvmsync elsewhere first)",
    );
    let version = Command::new(&bin).arg("--version").output().unwrap();
    ok(&version);
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(!version.contains(MARK), "a default build says: {version}");

    let d = tmp();
    let (v0, v1) = base_and_target(&d, SIZE, 5150, 77, 40);
    let (dest, st, delta) = (at(&d, "dest.img"), at(&d, "st"), at(&d, "d01.lvd"));
    std::fs::copy(&v0, &dest).unwrap();
    send_delta(Some(&v0), &v1, &delta);
    let mut child = Command::new(&bin)
        .env("LVMSYNC_TEST_SLOW_MS", SLOW_MS)
        .env("LVMSYNC_TEST_JOURNALING_PANICS", "1")
        .args(["apply", "--progress", "none"])
        .arg(&delta)
        .arg(&dest)
        .arg("--state-dir")
        .arg(&st)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("the apply still runs after {DEADLINE:?}: LVMSYNC_TEST_SLOW_MS is live");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Exit 0, not the error a live LVMSYNC_TEST_JOURNALING_PANICS makes of the panic.
    ok(&child.wait_with_output().unwrap());
    assert_eq!(
        file_hash(&dest),
        file_hash(&v1),
        "the destination is not the target"
    );
}
