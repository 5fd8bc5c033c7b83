//! HOST test: power-cut the whole QEMU guest in the middle of `lvmsync apply`, reboot, recover,
//! and check the destination holds exactly the base or exactly the target, never anything else.
//!
//! It runs on the host and drives `vm-tests/run` itself (it must not run under the guest
//! runner): `cargo test -p lvmsync-vm-tests --test powercut`.
//!
//! Persistent disks: every image lives in a host directory shared read-write with the guest
//! (`--rw`, 9p without caching, so whatever the guest kernel writes out reaches the host file
//! at once and survives qemu being killed). In the guest the destination is a loop device over
//! `dest.img` and the state directory (undo journal + state file) an ext4 file system on a
//! loop device over `state.img`, so the guest's page cache (loop and ext4 buffers) is lost at
//! the cut exactly as on a real power failure: only what lvmsync fsynced is guaranteed.
//!
//! Boots: (1) full apply of the base into pair 0, and an uncut apply of the delta into a spare
//! pair (must give the target); the host then copies pair 0 to pairs 1..=4; (2-4) apply the
//! delta into pair i with `--progress json` written to the shared dir; the host watches that
//! file and cuts the power (SIGTERM to `vm-tests/run`, whose `timeout` then kills qemu, as its
//! own `--timeout` does) at three points inside the write phase. Fixed `--timeout N` cuts were
//! tried first: the guest's boot time varies by seconds under load, so most landed before or
//! after the writes. The host copies the images of the last cut pair to pair 5 (the same
//! interrupted apply, to be cut again while it is recovered). (5) `lvmsync recover` of pairs
//! 1..=3, compare with the base and target images, then apply the delta again (must succeed
//! from the base, must be refused as a base mismatch, exit 7, at the target); then two more
//! interrupted states for ONE cut: pair 4's apply is held right after its commit record is
//! durable (its state file's temporary name is a FIFO, so the state write blocks in `open`),
//! and pair 5 is recovered slowly (`LVMSYNC_TEST_SLOW_MS`), the power cut inside that
//! recovery. (6) pair 4 (the FIFO replaced by a torn temporary file) must recover FORWARD to
//! exactly the target, and pair 5 recovered again must be exactly the base; both then get the
//! delta applied again as above. In the end every destination image must equal the target.

use lvmsync::journal::test_hooks::MARK as TEST_HOOKS;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// Destination size.
const SIZE: usize = 8 * MIB;
/// The cuts: once the apply reports this many MiB written, wait this many seconds, cut. The
/// delta holds 6 MiB in 1 MiB extents, each its own batch under [`SLOW_MS`]: these land
/// inside the second batch, inside the fourth, and in the last one, near the commit.
const CUTS: [(u64, f64); 3] = [(1, 0.6), (3, 1.2), (5, 1.0)];
/// `LVMSYNC_TEST_SLOW_MS` for the delta applies: the journal's test hook makes every extent
/// its own batch (undo entries synced, extent written) and pauses after it, which stretches
/// the write phase to several seconds so cuts land between, and inside, batches.
const SLOW_MS: u64 = 1500;
/// Seconds after pair 5's slow recovery starts that the power is cut: with [`SLOW_MS`] after
/// each restored range, inside the second of its five or more ranges.
const RECOVER_CUT_S: f64 = 2.5;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `n` bytes of a xorshift stream seeded with `seed` (incompressible, reproducible).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Run a host command; panic with its output unless it succeeds.
fn host(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The work directory (shared with the guest); removed when the test passes.
struct Work(PathBuf);

impl Work {
    fn new() -> Self {
        let dir = repo()
            .join("target")
            .join(format!("lvmsync-powercut-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create work dir");
        Work(dir)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
    fn read(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.0.join(name))
            .ok()
            .map(|s| s.trim().to_string())
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Boot the guest on `script` (bash) with the work dir shared; returns (exit code, wall s).
/// With `cut = Some((ready, delay))`, cut the power `delay` seconds after `ready()` first holds
/// (polled every 50 ms): SIGTERM to the harness, which (as on its `--timeout`) has `timeout`
/// kill qemu at once; the guest's page cache is lost.
fn boot(work: &Work, script: &str, cut: Option<(&dyn Fn() -> bool, f64)>) -> (i32, f64) {
    let prelude = format!(
        "set -eu; W={w}; L=$W/lvmsync\n\
         attach() {{ losetup /dev/loop0 $W/dest$1.img; losetup /dev/loop1 $W/state$1.img; \
         mkdir -p /mnt/s; mount -t ext4 /dev/loop1 /mnt/s; }}\n\
         detach() {{ umount /mnt/s; losetup -d /dev/loop1; sync; losetup -d /dev/loop0; }}\n\
         attach2() {{ losetup /dev/loop2 $W/dest$1.img; losetup /dev/loop3 $W/state$1.img; \
         mkdir -p /mnt/t; mount -t ext4 /dev/loop3 /mnt/t; }}\n\
         detach2() {{ umount /mnt/t; losetup -d /dev/loop3; sync; losetup -d /dev/loop2; }}\n\
         A=\"--state-dir /mnt/s\"; SLOW=\"env LVMSYNC_TEST_SLOW_MS={SLOW_MS}\"\n\
         settle() {{ $L recover --state-dir $3 $2 > $W/recover$1.log 2>&1\n\
           if cmp -s $2 $W/base.img; then echo base; elif cmp -s $2 $W/target.img; then \
           echo target; else echo other; fi > $W/after$1\n\
           set +e; $L apply --state-dir $3 --progress none $W/delta.lvd $2 > $W/again$1.log 2>&1; \
           echo $? > $W/again$1; set -e; }}\n",
        w = work.0.display(),
    );
    let t0 = Instant::now();
    let mut child = Command::new(repo().join("vm-tests/run"))
        .args(["--timeout", "600", "--module", "ext4"])
        .args(["--rw", &work.0.display().to_string(), "--", "bash", "-c"])
        .arg(format!("{prelude}{script}"))
        .spawn()
        .expect("run vm-tests/run");
    if let Some((ready, delay)) = cut {
        while child.try_wait().expect("wait for vm-tests/run").is_none() {
            if ready() {
                std::thread::sleep(Duration::from_secs_f64(delay));
                // It may just have exited on its own; the checks below tell.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let status = child.wait().expect("wait for vm-tests/run");
    (status.code().unwrap_or(-1), t0.elapsed().as_secs_f64())
}

/// The last whole `--progress json` line in `file` of the work dir: (bytes written, total).
/// The power cut may leave a torn last line (seen: `bytes` without `total`): it is skipped.
fn progress(work: &Work, file: &str) -> (Option<u64>, Option<u64>) {
    let text = work.read(file).unwrap_or_default();
    let field = |line: &str, key: &str| -> Option<u64> {
        let v = line.split(&format!("\"{key}\":")).nth(1)?;
        v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    text.lines()
        .rev()
        .filter(|l| l.trim_end().ends_with('}'))
        .find_map(|l| Some((field(l, "bytes")?, field(l, "total")?)))
        .map_or((None, None), |(b, t)| (Some(b), Some(t)))
}

/// A fresh state file system image for pair `name`.
fn state_fs(work: &Work, name: &str) {
    let img = work.path(&format!("state{name}.img"));
    fs::File::create(&img)
        .and_then(|f| f.set_len(128 * MIB as u64))
        .expect("state image");
    host("mkfs.ext4", &["-q", "-F", &img]);
}

#[test]
fn power_cut_mid_apply_leaves_base_or_target() {
    assert!(
        std::env::var_os("LVMSYNC_VM_GUEST").is_none(),
        "the power-cut test boots guests itself and runs on the HOST: run it without the guest \
         runner, `cargo test -p lvmsync-vm-tests --test powercut`"
    );
    let work = Work::new();
    let bin = std::env::var_os("LVMSYNC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/debug/lvmsync"));
    // A private copy: a concurrent rebuild must not swap the binary under the guest.
    fs::copy(&bin, work.0.join("lvmsync"))
        .unwrap_or_else(|e| panic!("copy {}: {e} (cargo build --bin lvmsync)", bin.display()));
    let lvmsync = work.path("lvmsync");
    // The slow applies and recovery below need the crash-test hooks: a build without them
    // ignores LVMSYNC_TEST_SLOW_MS, and the cuts would land before or after the writes.
    let version = Command::new(&lvmsync).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.contains(TEST_HOOKS),
        "{} has no test hooks ({}): build it with `cargo build --bin lvmsync --features \
         test-hooks`",
        bin.display(),
        version.trim()
    );

    // Base: noise; target: three quarters of it rewritten.
    let base = noise(1, SIZE);
    let mut target = base.clone();
    for m in (0..SIZE / MIB).filter(|m| m % 4 != 3) {
        target[m * MIB..(m + 1) * MIB].copy_from_slice(&noise(1000 + m as u64, MIB));
    }
    fs::write(work.0.join("base.img"), &base).unwrap();
    fs::write(work.0.join("target.img"), &target).unwrap();
    let (b, t) = (work.path("base.img"), work.path("target.img"));
    host(
        &lvmsync,
        &[
            "send",
            "--progress",
            "none",
            &b,
            "--to",
            &work.path("full.lvd"),
        ],
    );
    host(
        &lvmsync,
        &[
            "send",
            "--progress",
            "none",
            "--base",
            &b,
            &t,
            "--to",
            &work.path("delta.lvd"),
        ],
    );
    for pair in ["0", "m"] {
        fs::File::create(work.0.join(format!("dest{pair}.img")))
            .and_then(|f| f.set_len(SIZE as u64))
            .unwrap();
        state_fs(&work, pair);
    }
    fs::copy(&b, work.0.join("destm.img")).unwrap();

    // Boot 1: base into pair 0; an uncut apply of the delta into the spare pair m.
    let (code, wall1) = boot(
        &work,
        "attach 0; $L apply $A --progress none $W/full.lvd /dev/loop0\n\
         cmp /dev/loop0 $W/base.img; detach\n\
         attach m; $L apply $A --progress none --force $W/delta.lvd /dev/loop0\n\
         cmp /dev/loop0 $W/target.img; detach\n",
        None,
    );
    eprintln!("powercut: setup boot {wall1:.1} s wall, exit {code}");
    assert_eq!(code, 0, "setup boot failed (exit {code})");
    // Pairs 1..=3 for the mid-apply cuts, pair 4 for the cut after the commit.
    let commit_pair = CUTS.len() + 1;
    for i in 1..=commit_pair {
        copy_pair(&work, "0", &i.to_string());
    }

    // Boots 2..: cut the power while the destination is being written.
    let delta_bytes = (target.len() * 3 / 4) as u64;
    for (i, &(mib, delay)) in CUTS.iter().enumerate().map(|(i, c)| (i + 1, c)) {
        let file = format!("progress{i}");
        let at = (mib * MIB as u64).min(delta_bytes);
        let reached = || progress(&work, &file).0.is_some_and(|b| b >= at);
        let (code, wall) = boot(
            &work,
            &format!(
                "attach {i}; $SLOW $L apply $A --progress json $W/delta.lvd /dev/loop0 2> $W/{file}\n\
                 touch $W/finished{i}; detach\n"
            ),
            Some((&reached, delay)),
        );
        let (bytes, total) = progress(&work, &file);
        let finished = work.0.join(format!("finished{i}")).exists();
        eprintln!(
            "powercut: cut {i} {delay} s after {at} bytes written: exit {code}, {wall:.1} s wall, \
             {bytes:?} of {total:?} bytes at the last progress line, apply finished {finished}"
        );
        assert_eq!(total, Some(delta_bytes), "cut {i}: the delta's size");
        assert!(
            code == 143 && !finished && bytes.is_some_and(|b| b >= at),
            "cut {i} did not land while the delta was being written (exit {code}, finished \
             {finished}, {bytes:?} bytes)"
        );
    }
    // Pair 5: the last cut's interrupted apply once more, to be cut again while recovering.
    let recover_pair = commit_pair + 1;
    copy_pair(&work, &CUTS.len().to_string(), &recover_pair.to_string());
    let before_recover = fs::read(work.0.join(format!("dest{recover_pair}.img"))).unwrap();

    // Next boot: recover pairs 1..=3, classify, apply the delta again. Then hold pair 4's
    // apply right after its commit is durable: the temporary name of its state file (named
    // after the lock file that a `recover` creates) is a FIFO, so `open` blocks until a reader
    // comes, which none does (the guest kernel's wchan for that wait is `wait_for_partner`).
    // Then recover pair 5 slowly and cut the power inside that recovery.
    let mut script = String::new();
    for i in 1..=CUTS.len() {
        script += &format!("attach {i}; settle {i} /dev/loop0 /mnt/s; detach\n");
    }
    let (c, r) = (commit_pair, recover_pair);
    script += &format!(
        "attach2 {c}; $L recover --state-dir /mnt/t /dev/loop2 > /dev/null\n\
         lock=$(ls /mnt/t/dev_loop2-*.lock); mkfifo ${{lock%.lock}}.state.tmp\n\
         $L apply --state-dir /mnt/t --progress none $W/delta.lvd /dev/loop2 > $W/held{c}.log 2>&1 &\n\
         held() {{ grep -qs wait_for_partner /proc/$!/task/*/wchan; }}\n\
         for n in $(seq 1200); do held && break; kill -0 $! 2>/dev/null || break; sleep 0.1; done\n\
         held || {{ cat /proc/$!/task/*/wchan > $W/held{c}.wchan 2>&1; exit 3; }}\n\
         touch $W/held{c}\n\
         attach {r}; touch $W/recovering{r}\n\
         $SLOW $L recover $A /dev/loop0 > $W/cut-recover{r}.log 2>&1; touch $W/recovered{r}\n"
    );
    let recovering_marker = work.0.join(format!("recovering{r}"));
    let recovering = || recovering_marker.exists();
    let (code, wall) = boot(&work, &script, Some((&recovering, RECOVER_CUT_S)));
    let held = work.0.join(format!("held{c}")).exists();
    let recovered = work.0.join(format!("recovered{r}")).exists();
    let partly = fs::read(work.0.join(format!("dest{r}.img"))).unwrap() != before_recover;
    eprintln!(
        "powercut: recover boot {wall:.1} s wall, exit {code}; pair {c} held after its commit \
         {held}; pair {r} recovery cut {RECOVER_CUT_S} s in (finished {recovered}, destination \
         already partly restored on the disk: {partly})"
    );
    assert!(
        code == 143 && held && !recovered,
        "the cut did not land with pair {c} held after its commit ({held}, wchan: {:?}, apply \
         said {:?}) and pair {r} inside its recovery (finished {recovered}): exit {code}; \
         recover said {:?}",
        work.read(&format!("held{c}.wchan")),
        work.read(&format!("held{c}.log")),
        (1..=CUTS.len())
            .map(|i| work.read(&format!("recover{i}.log")).unwrap_or_default())
            .collect::<Vec<_>>()
    );
    for i in 1..=CUTS.len() {
        let after = settled(&work, i);
        assert!(
            after == "base" || after == "target",
            "pair {i}: after the power cut and recover the destination is neither the base nor \
             the target ({after}); recover said: {:?}",
            work.read(&format!("recover{i}.log"))
        );
    }

    // Last boot: pair 4 must roll forward (its state write was torn: the FIFO becomes a
    // half-written temporary file) and pair 5, recovered again, must roll back.
    let (code, wall) = boot(
        &work,
        &format!(
            "attach2 {c}; lock=$(ls /mnt/t/dev_loop2-*.lock); rm ${{lock%.lock}}.state.tmp\n\
             printf '{{\"dest\": \"torn' > ${{lock%.lock}}.state.tmp\n\
             settle {c} /dev/loop2 /mnt/t; detach2\n\
             attach {r}; settle {r} /dev/loop0 /mnt/s; detach\n"
        ),
        None,
    );
    eprintln!("powercut: last boot {wall:.1} s wall, exit {code}");
    assert_eq!(code, 0, "last boot failed (exit {code})");
    let rolled = work.read(&format!("recover{c}.log")).unwrap_or_default();
    assert_eq!(
        settled(&work, c),
        "target",
        "pair {c}: a power cut after the commit record is durable must recover to the target; \
         recover said: {rolled}"
    );
    assert!(
        rolled.contains("committed apply completed"),
        "pair {c}: recover must report the roll forward, said: {rolled}"
    );
    assert_eq!(
        settled(&work, r),
        "base",
        "pair {r}: a power cut during recovery, then recover again, must give the base; recover \
         said: {:?}",
        work.read(&format!("recover{r}.log"))
    );
    for i in 1..=recover_pair {
        let dest = fs::read(work.0.join(format!("dest{i}.img"))).unwrap();
        assert!(
            dest == target,
            "pair {i}: the destination is not the target in the end"
        );
    }
}

/// Copy pair `from`'s destination and state images to pair `to`.
fn copy_pair(work: &Work, from: &str, to: &str) {
    for f in ["dest", "state"] {
        fs::copy(
            work.0.join(format!("{f}{from}.img")),
            work.0.join(format!("{f}{to}.img")),
        )
        .unwrap();
    }
}

/// What the guest's `settle` found for pair `i` (recovered to "base", "target" or "other"),
/// after checking that applying the delta again did what that state calls for: succeed from
/// the base, exit 7 (base mismatch) at the target.
fn settled(work: &Work, i: usize) -> String {
    let log = work.read(&format!("recover{i}.log")).unwrap_or_default();
    let after = work.read(&format!("after{i}")).unwrap_or_default();
    let again = work.read(&format!("again{i}")).unwrap_or_default();
    let again_log = work.read(&format!("again{i}.log")).unwrap_or_default();
    eprintln!("powercut: pair {i}: recover said {log:?}; now {after}; apply again exit {again}");
    let want = match after.as_str() {
        "base" => "0",
        "target" => "7",
        _ => return after,
    };
    assert_eq!(
        again, want,
        "pair {i}: applying the delta again to a destination at the {after} must exit {want}: \
         {again_log}"
    );
    after
}
