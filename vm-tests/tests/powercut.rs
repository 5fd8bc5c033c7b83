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
//! pair (must give the target); the host then copies pair 0 to pairs 1..=3; (2-4) apply the
//! delta into pair i with `--progress json` written to the shared dir; the host watches that
//! file and cuts the power (SIGTERM to `vm-tests/run`, whose `timeout` then kills qemu, as its
//! own `--timeout` does) at three points inside the write phase. Fixed `--timeout N` cuts were
//! tried first: the guest's boot time varies by seconds under load, so most landed before or
//! after the writes. (5) `lvmsync recover` of every pair, compare with the base and target
//! images, then apply the delta again (must succeed from the base, must be refused as a base
//! mismatch, exit 7, at the target); in the end every destination image must equal the target.

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
/// With `cut = Some((file, bytes, delay))`, cut the power once the guest's progress `file`
/// reports `bytes` written, `delay` later: SIGTERM to the harness, which (as on its
/// `--timeout`) has `timeout` kill qemu at once; the guest's page cache is lost.
fn boot(work: &Work, script: &str, cut: Option<(&str, u64, f64)>) -> (i32, f64) {
    let prelude = format!(
        "set -eu; W={w}; L=$W/lvmsync\n\
         attach() {{ losetup /dev/loop0 $W/dest$1.img; losetup /dev/loop1 $W/state$1.img; \
         mkdir -p /mnt/s; mount -t ext4 /dev/loop1 /mnt/s; }}\n\
         detach() {{ umount /mnt/s; losetup -d /dev/loop1; sync; losetup -d /dev/loop0; }}\n\
         A=\"--state-dir /mnt/s\"; SLOW=\"env LVMSYNC_TEST_SLOW_MS={SLOW_MS}\"\n",
        w = work.0.display(),
    );
    let t0 = Instant::now();
    let mut child = Command::new(repo().join("vm-tests/run"))
        .args(["--timeout", "300", "--module", "ext4"])
        .args(["--rw", &work.0.display().to_string(), "--", "bash", "-c"])
        .arg(format!("{prelude}{script}"))
        .spawn()
        .expect("run vm-tests/run");
    if let Some((file, bytes, delay)) = cut {
        while child.try_wait().expect("wait for vm-tests/run").is_none() {
            if progress(work, file).0.is_some_and(|b| b >= bytes) {
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

/// The last `--progress json` line in `file` of the work dir: (bytes written, total).
fn progress(work: &Work, file: &str) -> (Option<u64>, Option<u64>) {
    let text = work.read(file).unwrap_or_default();
    let Some(line) = text.lines().rev().find(|l| l.contains("\"bytes\"")) else {
        return (None, None);
    };
    let field = |key: &str| -> Option<u64> {
        let v = line.split(&format!("\"{key}\":")).nth(1)?;
        v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    (field("bytes"), field("total"))
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
    for i in 1..=CUTS.len() {
        for f in ["dest", "state"] {
            fs::copy(
                work.0.join(format!("{f}0.img")),
                work.0.join(format!("{f}{i}.img")),
            )
            .unwrap();
        }
    }

    // Boots 2..: cut the power while the destination is being written.
    let delta_bytes = (target.len() * 3 / 4) as u64;
    for (i, &(mib, delay)) in CUTS.iter().enumerate().map(|(i, c)| (i + 1, c)) {
        let file = format!("progress{i}");
        let at = (mib * MIB as u64).min(delta_bytes);
        let (code, wall) = boot(
            &work,
            &format!(
                "attach {i}; $SLOW $L apply $A --progress json $W/delta.lvd /dev/loop0 2> $W/{file}\n\
                 touch $W/finished{i}; detach\n"
            ),
            Some((&file, at, delay)),
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

    // Last boot: recover every pair, classify, apply the delta again.
    let mut script = String::new();
    for i in 1..=CUTS.len() {
        script += &format!(
            "attach {i}; $L recover --state-dir /mnt/s /dev/loop0 > $W/recover{i}.log 2>&1\n\
             if cmp -s /dev/loop0 $W/base.img; then echo base; elif cmp -s /dev/loop0 \
             $W/target.img; then echo target; else echo other; fi > $W/after{i}\n\
             set +e; $L apply $A --progress none $W/delta.lvd /dev/loop0 > $W/again{i}.log 2>&1; \
             echo $? > $W/again{i}; set -e; detach\n"
        );
    }
    let (code, wall) = boot(&work, &script, None);
    eprintln!("powercut: recover boot {wall:.1} s wall, exit {code}");
    let logs: Vec<String> = (1..=CUTS.len())
        .map(|i| work.read(&format!("recover{i}.log")).unwrap_or_default())
        .collect();
    assert_eq!(
        code, 0,
        "recover boot failed (exit {code}); recover said {logs:?}"
    );
    for i in 1..=CUTS.len() {
        let log = work.read(&format!("recover{i}.log")).unwrap_or_default();
        let after = work.read(&format!("after{i}")).unwrap_or_default();
        let again = work.read(&format!("again{i}")).unwrap_or_default();
        let again_log = work.read(&format!("again{i}.log")).unwrap_or_default();
        eprintln!(
            "powercut: pair {i}: recover said {log:?}; now {after}; apply again exit {again}"
        );
        assert!(
            after == "base" || after == "target",
            "pair {i}: after the power cut and recover the destination is neither the base nor \
             the target ({after}); recover said: {log}"
        );
        let want = if after == "base" { "0" } else { "7" };
        assert_eq!(
            again, want,
            "pair {i}: applying the delta again to a destination at the {after} must exit {want}: \
             {again_log}"
        );
        let dest = fs::read(work.0.join(format!("dest{i}.img"))).unwrap();
        assert!(
            dest == target,
            "pair {i}: the destination is not the target in the end"
        );
    }
}
