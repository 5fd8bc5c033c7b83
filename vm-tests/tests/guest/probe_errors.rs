//! `lvmsync probe` and `lvmsync diff` refusals in the guest: a missing device, a non-dm
//! device (a loop device, a regular file), a non-root caller and a plain LV each get a clear
//! message naming the device and what to do; and the fixtures undo everything after a panic.

use super::probe::{dm_name, probe_fails, probe_json};
use lvmsync_vm_tests::{run, LoopDevice, VolumeGroup};

#[test]
fn probe_errors_name_the_device_and_the_fix() {
    let vg = VolumeGroup::new("lvsync-err", 1, 32);
    vg.lvcreate(&["-L", "8M", "-n", "plain", &vg.name]);

    let missing = vg.lv("nope");
    let err = probe_fails(&["probe", &missing]);
    assert!(
        err.contains(&missing) && err.contains("no such") && err.contains("lvs"),
        "{err}"
    );
    let err = probe_fails(&["probe", "/dev/mapper/does-not-exist"]);
    assert!(
        err.contains("/dev/mapper/does-not-exist") && err.contains("no such"),
        "{err}"
    );

    let lo = LoopDevice::new(8);
    let err = probe_fails(&["probe", &lo.path]);
    assert!(
        err.contains(&lo.path) && err.contains("not a device-mapper device"),
        "{err}"
    );
    assert!(err.contains("--base"), "{err}");
    let file = std::env::temp_dir().join("lvmsync-probe-regular-file");
    std::fs::write(&file, b"not a device").unwrap();
    let err = probe_fails(&["probe", file.to_str().unwrap()]);
    assert!(
        err.contains("regular file") && err.contains("not a device-mapper device"),
        "{err}"
    );
    std::fs::remove_file(&file).unwrap();

    // A non-root caller: the device exists, but dm ioctls need root.
    let plain = vg.lv("plain");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(lvmsync_vm_tests::lvmsync_bin())
        .args(["probe", &plain])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("permission denied") && err.contains("root"),
        "{err}"
    );

    // A plain LV probes fine but is not something `diff` can read changes from.
    assert_eq!(probe_json(&plain)["kind"], "plain");
    let err = probe_fails(&["diff", &plain]);
    assert!(
        err.contains(&plain) && err.contains("not a snapshot"),
        "{err}"
    );
}

/// The fixtures undo everything (LVs, VG, PVs, loop devices) even when a test panics.
#[test]
fn fixtures_clean_up_after_a_panic() {
    let mut names = (String::new(), Vec::new());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let vg = VolumeGroup::new("lvsync-drop", 1, 32);
        vg.lvcreate(&["-L", "8M", "-n", "lv", &vg.name]);
        names = (
            dm_name(&vg, "lv"),
            vg.loop_devices().map(String::from).collect(),
        );
        panic!("deliberate panic inside the fixture's scope");
    }));
    assert!(result.is_err());
    let (dm, loops) = names;
    assert!(!run("dmsetup", &["ls"]).contains(&dm), "{dm} left behind");
    let attached = run("losetup", &["-a"]);
    for l in &loops {
        assert!(
            !attached.contains(&format!("{l}:")),
            "{l} left attached: {attached}"
        );
    }
}
