//! Busy destinations on real loop devices: a block device that is mounted or held open
//! exclusively (O_EXCL) is refused by every writer — receive, apply, recover, verify
//! --repair, rollback — with exit code 4 and a message naming the device, what holds it and
//! the fix; its bytes stay identical and no state directory, lock, journal or state file is
//! created. Once released, the same command succeeds. Reads (send, verify) keep working on
//! a mounted device, and an apply keeps its claim while it writes. Needs root and loop
//! devices: each test is skipped, with the reason printed, where they are unavailable.

mod loop_support;
mod stream_util;

use loop_support::LoopDevice;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Output;
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
        .env("LVMSYNC_TEST_SLOW_MS", "20")
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
