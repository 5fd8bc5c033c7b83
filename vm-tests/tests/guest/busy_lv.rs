//! Guest scenario: a destination held by device-mapper. The PV under an active LV is held by
//! the LV's dm device, so `lvmsync apply` into the PV is refused (exit 4, the holder named
//! by its dm name, the PV's bytes unchanged, no state directory created), while the same
//! delta goes into the LV on top. Once the LV is deactivated, nothing holds the PV any more.

use lvmsync::dm::name::lv_dm_name;
use lvmsync::journal::dest::Destination;
use lvmsync_vm_tests::{lvmsync_bin, run, run_status, write_at, VolumeGroup};

const MIB: u64 = 1 << 20;

fn temp(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("lvmsync-busy-lv-{}-{name}", std::process::id()))
        .display()
        .to_string()
}

/// `lvmsync apply --state-dir <state> <delta> <dest>`, whatever its outcome.
fn apply(delta: &str, dest: &str, state: &str) -> std::process::Output {
    let bin = lvmsync_bin();
    run_status(
        &bin.to_string_lossy(),
        &[
            "apply",
            "--progress",
            "none",
            "--state-dir",
            state,
            delta,
            dest,
        ],
    )
}

#[test]
fn pv_of_active_lv_is_refused() {
    let vg = VolumeGroup::new("lvsync-busy", 1, 40);
    vg.lvcreate(&["-L", "8M", "-n", "dst", &vg.name]);
    let pv = vg.loop_devices().next().unwrap().to_string();
    let dst = format!("/dev/mapper/{}", lv_dm_name(&vg.name, "dst"));
    let dm_name = lv_dm_name(&vg.name, "dst");

    let img = temp("src.img");
    let pattern: Vec<u8> = (0..8 * MIB).map(|i| (i % 251) as u8).collect();
    std::fs::write(&img, &pattern).unwrap();
    let delta = temp("full.lvd");
    run(
        &lvmsync_bin().to_string_lossy(),
        &["send", "--progress", "none", &img, "--to", &delta],
    );

    let state = temp("state");
    let before = std::fs::read(&pv).unwrap();
    let o = apply(&delta, &pv, &state);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "apply into the PV: {err}");
    assert!(
        err.contains("is mounted or in use") && err.contains(&format!("({dm_name})")),
        "the message should name the dm holder {dm_name}: {err}"
    );
    assert!(std::fs::read(&pv).unwrap() == before, "the PV was written");
    assert!(!std::path::Path::new(&state).exists(), "state was created");

    write_at(&dst, 0, &vec![0xEE; 8 * MIB as usize]);
    let o = apply(&delta, &dst, &state);
    assert!(
        o.status.success(),
        "apply into the LV: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        std::fs::read(&dst).unwrap() == pattern,
        "the LV does not hold the image"
    );

    run("lvchange", &["-an", &vg.lv("dst")]);
    Destination::claim(std::path::Path::new(&pv)).expect("the PV is free once its LV is inactive");
    let _ = std::fs::remove_file(&img);
    let _ = std::fs::remove_file(&delta);
    let _ = std::fs::remove_dir_all(&state);
}
