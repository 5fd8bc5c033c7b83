//! Guest scenario: real classic (COW) snapshots on loop devices. Known writes to the origin
//! (first and last sector, writes straddling chunk boundaries, enough chunks to fill more than
//! one metadata area) must come back from `lvmsync diff --cow-store /dev/mapper/<vg>-<snap>-cow`
//! exactly, at two chunk sizes, and the same from the live `lvmsync diff <vg>/<snap>`. Reading
//! while the origin is being written gives a consistent list (everything committed before the
//! read, nothing not yet written), and a snapshot that overflowed is refused with exit code 3.

use lvmsync::dm::lvm::create_cow_snapshot;
use lvmsync::dm::name::lv_dm_name;
use lvmsync::units::Bytes;
use lvmsync_vm_tests::{lvmsync, write_at, VolumeGroup};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

const MIB: u64 = 1 << 20;
const ORIGIN: u64 = 24 * MIB;

/// Writes after the snapshots: first sector, last sector, straddling 4 KiB and 64 KiB chunk
/// boundaries, and 300 scattered 4 KiB writes (more than the 256 exceptions of one 4 KiB-chunk
/// metadata area, so the list continues into a second area).
fn writes() -> Vec<(u64, usize)> {
    let mut w = vec![
        (0, 512),
        (ORIGIN - 512, 512),
        (65536 - 100, 200),
        (3 * 65536 + 4096 - 1, 2),
        (5 * MIB - 10, 4096 + 20),
    ];
    w.extend((0..300).map(|i| (MIB + i * 16384 + 4096, 4096)));
    w
}

/// The chunks the writes touched, merged into `(offset, length)` runs.
fn truth(writes: &[(u64, usize)], chunk: u64) -> Vec<(u64, u64)> {
    let chunks: BTreeSet<u64> = writes
        .iter()
        .flat_map(|&(off, len)| off / chunk..(off + len as u64).div_ceil(chunk))
        .collect();
    runs(chunks, chunk)
}

fn runs(chunks: BTreeSet<u64>, chunk: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for c in chunks {
        match out.last_mut() {
            Some((o, l)) if *o + *l == c * chunk => *l += chunk,
            _ => out.push((c * chunk, chunk)),
        }
    }
    out
}

fn mapper(vg: &VolumeGroup, lv: &str) -> String {
    format!("/dev/mapper/{}", lv_dm_name(&vg.name, lv))
}

fn cow_device(vg: &VolumeGroup, snap: &str) -> String {
    format!("{}-cow", mapper(vg, snap))
}

/// `lvmsync diff --json <args>`: the block size and the changed extents (all must be "changed").
fn diff(args: &[&str]) -> (u64, Vec<(u64, u64)>) {
    let out = lvmsync(&[&["diff", "--json"], args].concat());
    assert!(
        out.status.success(),
        "diff {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("diff --json prints JSON");
    let extents = v["extents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["kind"], "changed");
            (e["offset"].as_u64().unwrap(), e["length"].as_u64().unwrap())
        })
        .collect();
    (v["block_size"].as_u64().unwrap(), extents)
}

/// One VG (LVM commands are slow under TCG), every COW check.
#[test]
fn cow_store_equals_ground_truth() {
    let vg = VolumeGroup::new("lvsync-cow", 1, 160);
    vg.lvcreate(&["-L", "24M", "-n", "origin", &vg.name]);
    let origin = mapper(&vg, "origin");
    write_at(&origin, 0, &vec![0x11; ORIGIN as usize]);
    for chunk in [4096u64, 65536] {
        let snap = format!("snap{chunk}");
        create_cow_snapshot(&vg.lv("origin"), &snap, Bytes(16 * MIB), Bytes(chunk))
            .expect("lvcreate -s");
    }
    let w = writes();
    for &(off, len) in &w {
        write_at(&origin, off, &vec![0xee; len]);
    }
    for chunk in [4096u64, 65536] {
        let snap = format!("snap{chunk}");
        let expect = truth(&w, chunk);
        assert_eq!(
            diff(&["--cow-store", &cow_device(&vg, &snap)]),
            (chunk, expect.clone()),
            "--cow-store, chunk {chunk}"
        );
        assert_eq!(
            diff(&[&vg.lv(&snap)]),
            (chunk, expect),
            "live diff, chunk {chunk}"
        );
    }
    read_while_writing(&vg, &origin, &w);
    overflowed_snapshot_is_refused(&vg);
}

/// Read the 4 KiB-chunk store repeatedly while another thread keeps writing new chunks: each
/// list holds every chunk whose write had completed (fsync) before the read started, and none
/// that had not been started when it ended.
fn read_while_writing(vg: &VolumeGroup, origin: &str, earlier: &[(u64, usize)]) {
    let chunk = 4096u64;
    let cow = cow_device(vg, "snap4096");
    let base: BTreeSet<u64> = earlier
        .iter()
        .flat_map(|&(off, len)| off / chunk..(off + len as u64).div_ceil(chunk))
        .collect();
    // Fresh chunks in [12 MiB, 20 MiB), every other 4 KiB, none touched before.
    let live: Vec<u64> = (0..1024).map(|i| (12 * MIB + i * 8192) / chunk).collect();
    assert!(live.iter().all(|c| !base.contains(c)));
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for &c in &live {
                write_at(origin, c * chunk, &[0x77; 4096]);
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
        let mut reads = 0;
        while done.load(Ordering::SeqCst) < live.len() || reads < 3 {
            let before = done.load(Ordering::SeqCst);
            let (_, extents) = diff(&["--cow-store", &cow]);
            // The write in flight when the read ended may or may not be listed.
            let after = (done.load(Ordering::SeqCst) + 1).min(live.len());
            let got: BTreeSet<u64> = extents
                .iter()
                .flat_map(|&(o, l)| o / chunk..(o + l) / chunk)
                .collect();
            let must: BTreeSet<u64> = base.iter().chain(&live[..before]).copied().collect();
            let may: BTreeSet<u64> = must.iter().chain(&live[..after]).copied().collect();
            assert!(
                got.is_superset(&must),
                "read {reads}: committed chunks missing"
            );
            assert!(
                got.is_subset(&may),
                "read {reads}: chunks never written listed"
            );
            reads += 1;
        }
        eprintln!("cow_diff: {reads} consistent reads of {cow} during writes");
    });
}

/// A 4 MiB store fed more than it can hold: the kernel marks it invalid, lvmsync refuses it.
fn overflowed_snapshot_is_refused(vg: &VolumeGroup) {
    vg.lvcreate(&["-L", "12M", "-n", "small", &vg.name]);
    create_cow_snapshot(&vg.lv("small"), "tiny", Bytes(4 * MIB), Bytes(4096)).expect("lvcreate -s");
    write_at(&mapper(vg, "small"), 0, &vec![0x33; 12 * MIB as usize]);
    let cow = cow_device(vg, "tiny");
    let out = lvmsync(&["diff", "--cow-store", &cow]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {err}");
    assert!(
        err.contains(&cow) && err.contains("marked invalid") && err.contains("full resync"),
        "{err}"
    );
}
