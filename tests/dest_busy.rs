//! Busy destinations on real loop devices: a block device that is mounted or held open
//! exclusively (O_EXCL) is refused by every writer — receive, apply, recover, verify
//! --repair, rollback — with exit code 4 and a message naming the device, what holds it and
//! the fix; its bytes stay identical and no state directory, lock, journal or state file is
//! created. Once released, the same command succeeds. Reads (send, verify) keep working on
//! a mounted device, and an apply keeps its claim while it writes; rollback and verify
//! --repair keep theirs from before they spool their stream to the end of its apply. Needs
//! root and loop devices: each test is skipped, with the reason printed, where they are
//! unavailable.

mod loop_support;
mod stream_util;

use loop_support::LoopDevice;
use lvmsync::journal::DestPaths;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use stream_util::*;

const MIB: usize = 1 << 20;

/// Assert `o` is the busy refusal for `dev` (exit 4, device named, how to look and fix).
fn assert_busy(o: &Output, dev: &str, cmd: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{cmd}: {err}");
    for want in [
        dev,
        "is mounted or in use",
        "nothing was written",
        "findmnt --source",
        "dmsetup ls --tree",
        "umount",
    ] {
        assert!(err.contains(want), "{cmd}: no {want:?} in: {err}");
    }
}

/// `lvmsync <args...> --state-dir <st>` with progress off.
fn lvmsync(args: &[&str], st: &Path) -> Output {
    bin()
        .args(args)
        .arg("--state-dir")
        .arg(st)
        .args(["--progress", "none"])
        .output()
        .unwrap()
}

/// Open `dev` exclusively, as mount and LVM do; held until dropped.
fn hold_exclusively(dev: &Path) -> std::io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_EXCL)
        .open(dev)
}

#[test]
fn loop_mounted_destination_is_refused_and_untouched() {
    let Some(mut lo) = LoopDevice::new(16) else {
        return;
    };
    let d = tmp();
    let (st, mnt, img, delta) = (
        at(&d, "st"),
        at(&d, "mnt"),
        at(&d, "v0.img"),
        at(&d, "full.lvd"),
    );
    write(&img, &make_image(16 * MIB, 5150));
    send_delta(None, &img, &delta);
    let stream = std::fs::read(&delta).unwrap();
    lo.mkfs_ext4();
    lo.mount(&mnt);
    let dev = lo.dev().to_string();
    let before = lo.hash();

    let o = receive(&stream, &lo.path, &st, &[]);
    assert_busy(&o, &dev, "receive");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("mounted on {}", mnt.display())),
        "mount point not named: {err}"
    );
    assert_busy(&apply(&delta, &lo.path, &st, &[]), &dev, "apply");
    assert_busy(
        &apply(&delta, &lo.path, &st, &["--dry-run"]),
        &dev,
        "apply --dry-run",
    );
    assert_busy(&recover(&lo.path, &st), &dev, "recover");
    let img_s = img.to_str().unwrap();
    assert_busy(
        &lvmsync(&["verify", img_s, &dev, "--repair"], &st),
        &dev,
        "verify --repair",
    );
    let snap = at(&d, "snap");
    assert_busy(
        &lvmsync(
            &["rollback", &dev, "--snapback", snap.to_str().unwrap()],
            &st,
        ),
        &dev,
        "rollback",
    );
    assert_eq!(lo.hash(), before, "a refused writer changed the device");
    assert!(!st.exists(), "a refused writer created {}", st.display());
    assert!(!snap.exists());

    // Reads stay non-exclusive: verify and send read the mounted device.
    let copy = at(&d, "copy.img");
    write(&copy, &std::fs::read(&lo.path).unwrap());
    ok(&lvmsync(&["verify", copy.to_str().unwrap(), &dev], &st));
    ok(&send_base(&img, &lo.path, at(&d, "back.lvd")));

    // Released, the same command goes through.
    lo.umount();
    ok(&apply(&delta, &lo.path, &st, &[]));
    assert_eq!(lo.hash(), file_hash(&img));
}

#[test]
fn loop_exclusive_holder_is_refused() {
    let Some(lo) = LoopDevice::new(8) else {
        return;
    };
    let d = tmp();
    let (st, img, delta) = (at(&d, "st"), at(&d, "v0.img"), at(&d, "full.lvd"));
    write(&img, &make_image(8 * MIB, 77));
    send_delta(None, &img, &delta);
    let stream = std::fs::read(&delta).unwrap();
    let before = lo.hash();

    let holder = hold_exclusively(&lo.path).unwrap();
    assert_busy(&receive(&stream, &lo.path, &st, &[]), lo.dev(), "receive");
    assert_busy(&apply(&delta, &lo.path, &st, &[]), lo.dev(), "apply");
    assert_eq!(lo.hash(), before);
    assert!(!st.exists(), "a refused writer created {}", st.display());

    drop(holder);
    ok(&receive(&stream, &lo.path, &st, &[]));
    assert_eq!(lo.hash(), file_hash(&img));
}

#[test]
fn loop_apply_keeps_its_claim_while_writing() {
    let Some(lo) = LoopDevice::new(8) else {
        return;
    };
    let d = tmp();
    let (st, img, delta) = (at(&d, "st"), at(&d, "v0.img"), at(&d, "full.lvd"));
    write(&img, &make_image(8 * MIB, 4040));
    send_delta(None, &img, &delta);
    let mut child = bin()
        .test_hook("LVMSYNC_TEST_SLOW_MS", "20")
        .arg("apply")
        .arg(&delta)
        .arg(&lo.path)
        .arg("--state-dir")
        .arg(&st)
        .args(["--progress", "none"])
        .spawn()
        .unwrap();
    // The journal is created after the claim: from then on nobody else may claim the device.
    let journaling = || {
        std::fs::read_dir(&st).is_ok_and(|mut dir| {
            dir.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "journal")))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !journaling() {
        assert!(child.try_wait().unwrap().is_none(), "apply ended early");
        assert!(std::time::Instant::now() < deadline, "no journal appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let e = hold_exclusively(&lo.path).expect_err("the device was claimable mid-apply");
    assert_eq!(e.raw_os_error(), Some(nix::libc::EBUSY));
    assert!(
        child.try_wait().unwrap().is_none(),
        "apply ended before the check"
    );
    assert!(child.wait().unwrap().success());
    assert_eq!(lo.hash(), file_hash(&img));
}

/// Run `lvmsync <args...> --state-dir <st>` with a FIFO at `spool`, the file it spools its
/// stream to: it blocks there, before its apply, until the FIFO is read. While it is
/// blocked, the device must stay claimed (an `O_EXCL` open fails with `EBUSY`), so nothing
/// could have been mounted since the command checked it. Then it is killed (nothing was
/// written yet) and the FIFO removed.
fn assert_claimed_while_spooling(args: &[&str], st: &Path, spool: &Path, dev: &Path) {
    nix::unistd::mkfifo(spool, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = bin()
        .args(args)
        .arg("--state-dir")
        .arg(st)
        .args(["--progress", "none"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut fifo = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(spool)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut byte = [0u8];
    // The first spooled byte: the command is past its claim and writing (then blocked).
    while !matches!(fifo.read(&mut byte), Ok(1)) {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("{args:?} ended ({status}) before spooling: {err}");
        }
        assert!(Instant::now() < deadline, "{args:?} spooled nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    let claimed = hold_exclusively(dev);
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(spool).unwrap();
    let e = claimed.expect_err("the device was claimable while the stream was spooled");
    assert_eq!(e.raw_os_error(), Some(nix::libc::EBUSY), "{args:?}");
}

/// A loop device holding `old` (8 MiB of its own bytes), and `img`, different bytes to send.
struct Spooling {
    lo: LoopDevice,
    d: tempfile::TempDir,
    st: PathBuf,
    old: PathBuf,
    img: PathBuf,
}

fn spooling_setup() -> Option<Spooling> {
    let lo = LoopDevice::new(8)?;
    let d = tmp();
    let (st, old, img) = (at(&d, "st"), at(&d, "old.img"), at(&d, "v0.img"));
    write(&old, &make_image(8 * MIB, 11));
    std::fs::write(&lo.path, std::fs::read(&old).unwrap()).unwrap();
    write(&img, &make_image(8 * MIB, 4141));
    Some(Spooling {
        lo,
        d,
        st,
        old,
        img,
    })
}

#[test]
fn loop_rollback_keeps_its_claim_while_spooling() {
    let Some(Spooling {
        lo,
        d,
        st,
        old,
        img,
    }) = spooling_setup()
    else {
        return;
    };
    let (snap, full) = (at(&d, "snap"), at(&d, "full.lvd"));
    send_delta(None, &img, &full);
    let snap_s = snap.to_str().unwrap();
    // The undo image holds the old bytes: a large stream to roll back.
    ok(&apply(&full, &lo.path, &st, &["--snapback", snap_s]));
    assert_eq!(lo.hash(), file_hash(&img));
    let spool = DestPaths::new(&st, &lo.path)
        .unwrap()
        .journal
        .with_extension("rollback.lvd");
    let rollback = ["rollback", lo.dev(), "--snapback", snap_s];
    assert_claimed_while_spooling(&rollback, &st, &spool, &lo.path);
    assert_eq!(lo.hash(), file_hash(&img), "the killed rollback wrote");
    ok(&lvmsync(&rollback, &st));
    assert_eq!(lo.hash(), file_hash(&old), "rollback did not restore");
}

#[test]
fn loop_repair_keeps_its_claim_while_spooling() {
    let Some(Spooling {
        lo,
        d: _d,
        st,
        old,
        img,
    }) = spooling_setup()
    else {
        return;
    };
    let spool = DestPaths::new(&st, &lo.path)
        .unwrap()
        .journal
        .with_extension("repair.lvd");
    let repair = ["verify", img.to_str().unwrap(), lo.dev(), "--repair"];
    assert_claimed_while_spooling(&repair, &st, &spool, &lo.path);
    assert_eq!(lo.hash(), file_hash(&old), "the killed repair wrote");
    ok(&lvmsync(&repair, &st));
    assert_eq!(lo.hash(), file_hash(&img), "repair did not repair");
}
