//! Crash safety: `kill -9` the real receiver at many random points during an apply, and
//! during a recovery; after `lvmsync recover` the destination must be exactly the base or
//! exactly the target (and the state file must name that same state), never anything else.
//!
//! `LVMSYNC_TEST_SLOW_MS` (test-only) makes the binary apply one extent per batch and sleep
//! after each, and sleep after each range restored by recovery, so kill points spread over
//! the whole apply instead of landing before or after it. It also makes the journal behave
//! like a disk losing power: its writes stay in memory until their sync (so a kill loses
//! what was not synced), and the file apply's journaling thread, which runs on while the
//! destination is written, syncs every 64 KiB slowly, so the applying pass keeps waiting
//! for it. A destination write made before its old bytes' journal sync then leaves bytes
//! recovery cannot restore: with the writer not waiting for the journaling thread, or
//! waiting for the sync before the one covering its batch, this test fails within a few
//! dozen kills.
//!
//! Every other kill lands in an apply that reuses the spare journal two earlier applies
//! left (full of their frames, which must never be replayed); the others start a new one.
//!
//! `LVMSYNC_TEST_JOURNALING_PANICS` (test-only) makes that journaling thread panic: an apply
//! that fails early (a corrupt file, a device that can't be grown) must still report it as
//! an error and leave the destination as it was.

mod loop_support;
mod stream_util;
use lvmsync::journal::format::JournalReader;
use lvmsync::stream::fingerprint::content_fingerprint;
use lvmsync::units::Bytes;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use stream_util::*;

const SIZE: usize = 4 << 20;
const SLOW: &str = "2";

struct Fixture {
    dir: tempfile::TempDir,
    v0: PathBuf,
    delta: PathBuf,
    h0: blake3::Hash,
    h1: blake3::Hash,
    fp0: String,
    fp1: String,
    st_template: PathBuf,
    dest: PathBuf,
    st: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tmp();
    let (v0, v1) = base_and_target(&dir, SIZE, 31337, 2718, 40);
    let delta = at(&dir, "d01.lvd");
    send_delta(Some(&v0), &v1, &delta);
    let dest = at(&dir, "dest.img");
    let st_template = at(&dir, "st_template");
    let full = at(&dir, "full.lvd");
    send_delta(None, &v0, &full);
    ok(&apply(&full, &dest, &st_template, &[]));
    // There and back again: the template's spare journal holds two applies' frames.
    let back = at(&dir, "d10.lvd");
    send_delta(Some(&v1), &v0, &back);
    ok(&apply(&delta, &dest, &st_template, &[]));
    ok(&apply(&back, &dest, &st_template, &[]));
    let spare = std::fs::read_dir(&st_template)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "spare"))
        .expect("a finished apply keeps its journal as the spare");
    assert!(std::fs::metadata(spare).unwrap().len() > 1 << 20);
    let fp = |p: &Path| content_fingerprint(p, Bytes(SIZE as u64)).unwrap().to_hex();
    Fixture {
        h0: file_hash(&v0),
        h1: file_hash(&v1),
        fp0: fp(&v0),
        fp1: fp(&v1),
        st: at(&dir, "st"),
        dir,
        v0,
        delta,
        st_template,
        dest,
    }
}

impl Fixture {
    /// Destination at the base; the state directory as the template's, with or without
    /// its spare journal.
    fn reset(&self, spare: bool) {
        std::fs::copy(&self.v0, &self.dest).unwrap();
        let _ = std::fs::remove_dir_all(&self.st);
        std::fs::create_dir(&self.st).unwrap();
        for e in std::fs::read_dir(&self.st_template).unwrap() {
            let p = e.unwrap().path();
            if spare || p.extension().is_none_or(|x| x != "spare") {
                std::fs::copy(&p, self.st.join(p.file_name().unwrap())).unwrap();
            }
        }
    }

    fn spawn(&self, args: &[&str]) -> Child {
        bin()
            .args(args)
            .arg(&self.dest)
            .arg("--state-dir")
            .arg(&self.st)
            .test_hook("LVMSYNC_TEST_SLOW_MS", SLOW)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// How long an uninterrupted recovery of the current (killed) apply takes, timed on a
    /// copy of the destination and state directory so the real ones stay as they are.
    fn time_recovery_on_copy(&self) -> Duration {
        let (dest, st) = (at(&self.dir, "probe.img"), at(&self.dir, "probe-st"));
        std::fs::copy(&self.dest, &dest).unwrap();
        let _ = std::fs::remove_dir_all(&st);
        std::fs::create_dir(&st).unwrap();
        for e in std::fs::read_dir(&self.st).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, st.join(p.file_name().unwrap())).unwrap();
        }
        let t = Instant::now();
        let o = bin()
            .arg("recover")
            .arg(&dest)
            .arg("--state-dir")
            .arg(&st)
            .test_hook("LVMSYNC_TEST_SLOW_MS", SLOW)
            .output()
            .unwrap();
        ok(&o);
        t.elapsed()
    }

    fn spawn_apply(&self) -> Child {
        let delta = self.delta.to_str().unwrap().to_string();
        self.spawn(&["apply", "--progress", "none", &delta])
    }

    fn journal_exists(&self) -> bool {
        std::fs::read_dir(&self.st).unwrap().any(|e| {
            e.unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "journal")
        })
    }

    /// Whether the journal (if any) holds a valid commit, read with the library's reader.
    fn journal_committed(&self) -> Option<bool> {
        let path = std::fs::read_dir(&self.st)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "journal"))?;
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let Some(mut r) = JournalReader::open(file).unwrap() else {
            return Some(false);
        };
        while r.next_entry().unwrap().is_some() {}
        Some(r.committed)
    }

    /// Recover normally, then check the destination is exactly base or target and the
    /// state file agrees; returns true for target.
    fn recover_and_check(&self, what: &str) -> bool {
        let o = recover(&self.dest, &self.st);
        ok(&o);
        assert!(!self.journal_exists(), "{what}: journal left after recover");
        let h = file_hash(&self.dest);
        let state = std::fs::read_dir(&self.st)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "state"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .unwrap();
        if h == self.h1 {
            assert!(
                state.contains(&self.fp1),
                "{what}: target data but state {state}"
            );
            true
        } else {
            assert_eq!(h, self.h0, "{what}: destination is neither base nor target");
            assert!(
                state.contains(&self.fp0),
                "{what}: base data but state {state}"
            );
            false
        }
    }
}

fn kill_after(mut child: Child, after: Duration) -> bool {
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap_or(()); // SIGKILL
    child.wait().unwrap();
    running
}

fn calibrate(f: &Fixture) -> Duration {
    f.reset(true);
    let t = Instant::now();
    let status = f.spawn_apply().wait().unwrap();
    assert!(status.success());
    let d = t.elapsed();
    assert!(d > Duration::from_millis(50), "slow apply took only {d:?}");
    d
}

#[test]
fn kill_9_during_apply_leaves_base_or_target() {
    let f = fixture();
    let full = calibrate(&f);
    let mut rng = Rng(0xdead_beef);
    let (mut mid, mut base, mut target) = (0, 0, 0);
    for i in 0..400 {
        f.reset(i % 2 == 0);
        // Mostly inside the apply, a few after it ended. Every third kill is timed from the
        // start (start-up and the up-front verification pass, roughly the first fifth); the
        // others from the moment the journal exists, so a loaded machine's slow start-up
        // cannot make most kills land before the apply writes anything.
        let ms = full.as_millis() as u64;
        let mut apply = f.spawn_apply();
        let at_ms = if i % 3 == 0 {
            ms / 5 + rng.below(ms * 9 / 10)
        } else {
            while !f.journal_exists() && apply.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
            rng.below(ms * 9 / 10)
        };
        let running = kill_after(apply, Duration::from_millis(at_ms));
        if running && f.journal_exists() {
            mid += 1;
        }
        if f.recover_and_check(&format!("apply kill #{i} at {at_ms} ms")) {
            target += 1;
        } else {
            base += 1;
        }
        if mid >= 50 && target > 0 {
            break;
        }
    }
    eprintln!("apply kills: {mid} mid-apply, {base} ended at base, {target} at target");
    assert!(mid >= 50, "only {mid} kills landed mid-apply");
    assert!(base > 0 && target > 0);
}

#[test]
fn kill_9_during_recovery_leaves_base_or_committed_target() {
    let f = fixture();
    let full = calibrate(&f);
    let mut rng = Rng(0xfeed_f00d);
    let mut mid = 0;
    for i in 0..400 {
        f.reset(i % 2 == 0);
        // Kill once the apply has its journal (waited for, so a loaded machine's slow
        // start-up cannot make every kill land before it), somewhere in the next half run.
        let at_ms = rng.below(full.as_millis() as u64 / 2);
        let mut apply = f.spawn_apply();
        while !f.journal_exists() && apply.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        kill_after(apply, Duration::from_millis(at_ms));
        let Some(committed) = f.journal_committed() else {
            continue;
        };
        // Kill somewhere inside this recovery's own duration (timed on a copy), so the
        // kill points land mid-recovery whatever the machine's load.
        let rec_full = f.time_recovery_on_copy().as_millis() as u64;
        let rec_ms = rng.below(rec_full * 9 / 10 + 1);
        if kill_after(f.spawn(&["recover"]), Duration::from_millis(rec_ms)) {
            mid += 1;
        }
        let what = format!("recovery kill #{i}: apply at {at_ms} ms, recover at {rec_ms} ms");
        // An apply killed after its commit frame rolls forward; any other, back.
        assert_eq!(
            f.recover_and_check(&what),
            committed,
            "{what}: committed={committed}"
        );
        if mid >= 50 {
            break;
        }
    }
    eprintln!("recovery kills mid-recovery: {mid}");
    assert!(mid >= 50, "only {mid} kills landed mid-recovery");
    let _ = &f.dir;
}

/// `lvmsync apply [extra] delta dest --state-dir st` with the test `hooks` set.
fn apply_hooked(
    hooks: &[(&str, &str)],
    extra: &[&str],
    delta: &Path,
    dest: &Path,
    st: &Path,
) -> std::process::Output {
    let mut c = bin();
    for (var, value) in hooks {
        c.test_hook(var, value);
    }
    c.args(["apply", "--progress", "none"])
        .args(extra)
        .arg(delta)
        .arg(dest)
        .arg("--state-dir")
        .arg(st)
        .output()
        .unwrap()
}

/// Assert the apply in `o` failed with an error naming the journaling thread's panic (and
/// `cause`, the apply's own failure) instead of dying of the panic (exit 101), with exit
/// code `code`: that of the apply's own failure, or 8 (internal error) without one.
fn assert_panic_reported(o: &std::process::Output, cause: &str, code: i32) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{err}");
    for want in ["journaling thread panicked", "a bug in lvmsync", cause] {
        assert!(err.contains(want), "no {want:?} in: {err}");
    }
}

/// A destination holding a full sync of a base image, and an incremental delta to its target.
struct Applied {
    v0: PathBuf,
    dest: PathBuf,
    st: PathBuf,
    delta: PathBuf,
}

/// Make a base and a target image (`seed`, `target_seed`), apply a full sync of the base to
/// a new destination, and write the delta from base to target: the setup of the panic tests.
fn applied_full_and_delta(d: &tempfile::TempDir, seed: u64, target_seed: u64) -> Applied {
    let (v0, v1) = base_and_target(d, SIZE, seed, target_seed, 40);
    let (dest, st, full, delta) = (
        at(d, "dest.img"),
        at(d, "st"),
        at(d, "full.lvd"),
        at(d, "d01.lvd"),
    );
    send_delta(None, &v0, &full);
    ok(&apply(&full, &dest, &st, &[]));
    send_delta(Some(&v0), &v1, &delta);
    Applied {
        v0,
        dest,
        st,
        delta,
    }
}

/// A journaling thread that panics while a delta file fails verification is joined and
/// reported: the apply exits with an error, not a panic, and writes nothing.
#[test]
fn journaling_thread_panic_after_failed_verification_is_an_error() {
    let d = tmp();
    let a = applied_full_and_delta(&d, 4242, 99);
    let mut bad = std::fs::read(&a.delta).unwrap();
    let n = bad.len();
    bad[n * 3 / 4] ^= 0x5a;
    std::fs::write(&a.delta, &bad).unwrap();
    let o = apply_hooked(
        &[("LVMSYNC_TEST_JOURNALING_PANICS", "1")],
        &[],
        &a.delta,
        &a.dest,
        &a.st,
    );
    // A corrupt stream: exit 5, as without the panic.
    assert_panic_reported(&o, "checksum", 5);
    assert_eq!(
        file_hash(&a.dest),
        file_hash(&a.v0),
        "the destination changed"
    );
    let journal = std::fs::read_dir(&a.st).unwrap().any(|e| {
        e.unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "journal")
    });
    assert!(!journal, "a journal was left behind");
}

/// The same when the destination can't be grown (a loop device smaller than the stream's
/// device, with `--grow`): the journaling thread is stopped, panics, and the apply reports
/// both that and the refusal, with the device untouched.
#[test]
fn journaling_thread_panic_after_failed_grow_is_an_error() {
    let Some(lo) = loop_support::LoopDevice::new(4) else {
        return;
    };
    let d = tmp();
    let (img, st, full) = (at(&d, "v0.img"), at(&d, "st"), at(&d, "full.lvd"));
    write(&img, &make_image(2 * SIZE, 808));
    send_delta(None, &img, &full);
    let before = lo.hash();
    // Slow journaling: the thread is still at work when the grow fails and stops it.
    let hooks = [
        ("LVMSYNC_TEST_SLOW_MS", "20"),
        ("LVMSYNC_TEST_JOURNALING_PANICS", "1"),
    ];
    let o = apply_hooked(&hooks, &["--grow"], &full, &lo.path, &st);
    // A destination that can't take the stream: exit 4, as without the panic.
    assert_panic_reported(&o, "can't be resized", 4);
    assert_eq!(lo.hash(), before, "the device changed");
}

/// A journaling thread that panics in an apply that would have succeeded: nothing else
/// failed, so the exit code is 8 (internal error, a bug) and not the class of what the panic
/// made fail after it (the writer finding journaling stopped); the destination is unchanged.
#[test]
fn journaling_thread_panic_alone_is_an_internal_error() {
    let d = tmp();
    let a = applied_full_and_delta(&d, 5151, 77);
    for slow in ["0", "20"] {
        // Slow journaling: the writer waits for it, and finds it stopped by the panic.
        let hooks = [
            ("LVMSYNC_TEST_SLOW_MS", slow),
            ("LVMSYNC_TEST_JOURNALING_PANICS", "1"),
        ];
        let o = apply_hooked(&hooks, &[], &a.delta, &a.dest, &a.st);
        assert_panic_reported(&o, "", 8);
        assert_eq!(
            file_hash(&a.dest),
            file_hash(&a.v0),
            "slow {slow}: the destination changed"
        );
    }
}
