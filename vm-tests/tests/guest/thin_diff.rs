//! Guest scenario: a real thin pool, a thin LV and two thin snapshots made by the kernel.
//! Known writes between the snapshots (first and last sector, writes straddling pool-block
//! boundaries, writes into unmapped space, whole-block and partial-block discards) must come
//! back exactly from `lvmsync diff`: live (through a reserved metadata snapshot, both the CLI
//! and `lvmsync::thin::live`), offline on a copy of `_tmeta` taken under
//! `reserve_metadata_snap`, and as "everything mapped" for an initial sync. The kernel-made
//! trees share subtrees, so the diff must skip some and read fewer nodes than a full walk.
//! Afterwards no metadata snapshot is held; a stale one is refused without `--force` and
//! released with it. The kernel-made scaling benchmark is the submodule [`scaling`].

use lvmsync::dm::name::lv_dm_name;
use lvmsync::thin::live::diff_pool_devices_with_stats;
use lvmsync_vm_tests::{lvmsync, run, run_status, write_at, VolumeGroup};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

mod scaling;

const MIB: u64 = 1 << 20;
/// Pool block (LVM chunk) size.
const BLOCK: u64 = 65536;
/// Thin LV size: 1024 blocks.
const THIN: u64 = 64 * MIB;
/// Blocks 0..BASE are written before the first snapshot (several leaves of mappings).
const BASE: u64 = 768;

/// Writes after the first snapshot, `(offset, length)` in bytes.
fn writes() -> Vec<(u64, u64)> {
    vec![
        (0, 512),                      // first sector: block 0 changed
        (THIN - 512, 512),             // last sector: block 1023 added
        (3 * BLOCK - 100, 200),        // straddles blocks 2|3: both changed
        (BASE * BLOCK - 10, 20),       // straddles 767|768: changed, added
        (900 * BLOCK + 5, BLOCK + 10), // blocks 900..=901 added
        (400 * BLOCK, 4096),           // inside a middle leaf: changed
    ]
}

/// Discards after the writes: blocks 10..14 whole (removed), part of block 20 (no change:
/// dm-thin only unmaps whole blocks).
const DISCARDS: [(u64, u64); 2] = [(10 * BLOCK, 4 * BLOCK), (20 * BLOCK + 4096, 4096)];

/// The expected extents, per block, merged: from the writes and discards above.
fn truth() -> Vec<(u64, u64, String)> {
    let mut kinds: BTreeMap<u64, &str> = BTreeMap::new();
    for (off, len) in writes() {
        for b in off / BLOCK..(off + len).div_ceil(BLOCK) {
            kinds.insert(b, if b < BASE { "changed" } else { "added" });
        }
    }
    for (off, len) in DISCARDS {
        for b in off.div_ceil(BLOCK)..(off + len) / BLOCK {
            kinds.insert(b, if b < BASE { "removed" } else { "none" });
        }
    }
    merge(kinds.into_iter().filter(|(_, k)| *k != "none"))
}

fn merge<'a>(blocks: impl Iterator<Item = (u64, &'a str)>) -> Vec<(u64, u64, String)> {
    let mut out: Vec<(u64, u64, String)> = Vec::new();
    for (b, k) in blocks {
        match out.last_mut() {
            Some((o, l, kk)) if *o + *l == b * BLOCK && kk == k => *l += BLOCK,
            _ => out.push((b * BLOCK, BLOCK, k.to_string())),
        }
    }
    out
}

fn extents(v: &Value) -> Vec<(u64, u64, String)> {
    assert_eq!(v["block_size"], BLOCK, "{v}");
    v["extents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let kind = e["kind"].as_str().unwrap().to_string();
            (
                e["offset"].as_u64().unwrap(),
                e["length"].as_u64().unwrap(),
                kind,
            )
        })
        .collect()
}

fn diff_json(args: &[&str]) -> Vec<(u64, u64, String)> {
    let out = lvmsync(&[&["diff", "--json"], args].concat());
    assert!(
        out.status.success(),
        "diff {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    extents(&serde_json::from_slice(&out.stdout).unwrap())
}

/// The held metadata root field of the pool status (`-` when none is held).
fn held_field(tpool: &str) -> String {
    let status = run("dmsetup", &["status", tpool]);
    // `<start> <len> thin-pool <trans> <meta> <data> <held root> ...`
    status
        .split_whitespace()
        .nth(6)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn thin_diff_equals_ground_truth() {
    let vg = VolumeGroup::new("lvsync-thin", 1, 200);
    vg.thin_pool_with_thin("96M", "64k", "64M");
    let thin = format!("/dev/mapper/{}", lv_dm_name(&vg.name, "thin"));
    write_at(&thin, 0, &vec![0x11; (BASE * BLOCK) as usize]);
    lvmsync::dm::lvm::create_thin_snapshot(&vg.lv("thin"), "snap1").expect("snapshot 1");
    for (off, len) in writes() {
        write_at(&thin, off, &vec![0x22; len as usize]);
    }
    for (off, len) in DISCARDS {
        run(
            "blkdiscard",
            &["-o", &off.to_string(), "-l", &len.to_string(), &thin],
        );
    }
    lvmsync::dm::lvm::create_thin_snapshot(&vg.lv("thin"), "snap2").expect("snapshot 2");

    let tpool = format!("{}-tpool", lv_dm_name(&vg.name, "pool"));
    let tmeta = format!("/dev/mapper/{}", lv_dm_name(&vg.name, "pool_tmeta"));
    let ids = vg.lvs_report(&["thin_id"]);
    let id = |lv: &str| -> u64 { ids[lv]["thin_id"].parse().unwrap() };
    let (id1, id2) = (id("snap1"), id("snap2"));
    let want = truth();

    // Live, through the CLI (the dm::diff_live dispatcher) and through the library (with work counts).
    assert_eq!(
        diff_json(&[&vg.lv("snap2"), "--since", &vg.lv("snap1")]),
        want,
        "live CLI"
    );
    assert_eq!(held_field(&tpool), "-", "released after the CLI diff");
    let (cs, stats) =
        diff_pool_devices_with_stats(&tpool, Path::new(&tmeta), Some(id1), id2, false)
            .expect("live diff");
    assert_eq!(
        extents(&serde_json::to_value(&cs).unwrap()),
        want,
        "live library"
    );
    assert_eq!(held_field(&tpool), "-", "released after the library diff");
    let (_, full) = diff_pool_devices_with_stats(&tpool, Path::new(&tmeta), None, id1, false)
        .expect("live full walk");
    println!(
        "kernel-made trees: diff read {} nodes, skipped {} shared subtrees; a full walk of one \
         device reads {} nodes",
        stats.nodes_read, stats.shared_subtrees_skipped, full.nodes_read
    );
    assert!(stats.shared_subtrees_skipped > 0, "{stats:?}");
    assert!(
        stats.nodes_read < 2 * full.nodes_read,
        "{stats:?} vs {full:?}"
    );

    // Everything mapped in snap1: the base region, added.
    let base = merge((0..BASE).map(|b| (b, "added")));
    assert_eq!(diff_json(&[&vg.lv("snap1")]), base, "everything mapped");

    // Offline, on a copy of _tmeta taken under a reserved metadata snapshot.
    run(
        "dmsetup",
        &["message", &tpool, "0", "reserve_metadata_snap"],
    );
    let copy = std::env::temp_dir().join("lvmsync-tmeta.copy");
    let copy_s = copy.to_str().unwrap();
    run(
        "dd",
        &[
            &format!("if={tmeta}"),
            &format!("of={copy_s}"),
            "bs=1M",
            "iflag=direct",
            "status=none",
        ],
    );
    run(
        "dmsetup",
        &["message", &tpool, "0", "release_metadata_snap"],
    );
    let (s1, s2) = (id1.to_string(), id2.to_string());
    assert_eq!(
        diff_json(&["--thin-metadata", copy_s, "--snap1", &s1, "--snap2", &s2]),
        want,
        "offline copy"
    );
    let _ = std::fs::remove_file(&copy);

    // A metadata snapshot held by someone else: refused without --force, left alone.
    run(
        "dmsetup",
        &["message", &tpool, "0", "reserve_metadata_snap"],
    );
    let held = held_field(&tpool);
    assert_ne!(held, "-");
    let out = lvmsync(&["diff", &vg.lv("snap2"), "--since", &vg.lv("snap1")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--force"),
        "a held snapshot must be refused: {:?}, stderr {err:?}",
        out.status
    );
    assert_eq!(
        held_field(&tpool),
        held,
        "someone else's hold is not released without --force"
    );
    assert_eq!(
        diff_json(&[&vg.lv("snap2"), "--since", &vg.lv("snap1"), "--force"]),
        want,
        "--force"
    );
    assert_eq!(held_field(&tpool), "-", "released after --force");
    signals_never_leave_a_hold(&vg, &tpool);
}

/// SIGTERM at staggered moments of a live diff (before, during and after the hold): whatever
/// the moment, no metadata snapshot stays held, and a signal that lands during the hold ends
/// the process with 128 + 15 after releasing it.
fn signals_never_leave_a_hold(vg: &VolumeGroup, tpool: &str) {
    let (mut handled, mut other) = (0, 0);
    for i in 0..16u64 {
        let mut child = std::process::Command::new(lvmsync_vm_tests::lvmsync_bin())
            .args(["diff", &vg.lv("snap2"), "--since", &vg.lv("snap1")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn lvmsync");
        std::thread::sleep(std::time::Duration::from_millis(i * 40));
        let _ = run_status("kill", &["-TERM", &child.id().to_string()]);
        let status = child.wait().unwrap();
        if status.code() == Some(143) {
            handled += 1;
        } else {
            other += 1;
        }
        assert_eq!(
            held_field(tpool),
            "-",
            "hold left after SIGTERM at {} ms: {status:?}",
            i * 40
        );
    }
    println!("SIGTERM during a live diff: {handled} released by the handler (exit 143), {other} before/after the hold");
}
