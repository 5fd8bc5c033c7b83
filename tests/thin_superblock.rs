//! Superblock states of real `thin_restore`d metadata that change what `lvmsync diff
//! --thin-metadata` may read: the NEEDS_CHECK flag (refused, exit code 3, the fix named) and a
//! held metadata snapshot (`--metadata-snap` reads through its superblock copy, like
//! `thin_delta -m`, which is the oracle here).
//!
//! `thin_restore` cannot make either state, so the tests patch the image the way the kernel
//! would: set the flag bit, or write a superblock copy to a free block and record it as the held
//! root (checksums recomputed with their salts; the real `thin_dump`/`thin_delta` accepting the
//! patched image shows the patch is well-formed).

mod thin_support;

use lvmsync::thin::checksum::{seal, BTREE_CSUM_XOR, SUPERBLOCK_CSUM_XOR};
use lvmsync::ExtentKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use thin_support::{
    lvmsync_bin, lvmsync_diff, lvmsync_diff_with, meta_bytes_for, restore, thin_delta,
    thin_delta_with, Device,
};

const B: usize = 4096;

/// A restored image of two devices that differ in every way (changed, added and removed
/// blocks), in `dir`.
fn restored(dir: &Path) -> PathBuf {
    let d1: Vec<(u64, u64, u32)> = (0..3000u64).map(|v| (v, v + 10, 0)).collect();
    let d2: Vec<(u64, u64, u32)> = (500..4000u64)
        .map(|v| (v, if v % 7 == 0 { v + 20_000 } else { v + 10 }, 0))
        .collect();
    let devs = [Device { id: 1, maps: d1 }, Device { id: 2, maps: d2 }];
    let meta = dir.join("pool.meta");
    restore(dir, &meta, &devs, 2, meta_bytes_for(&devs));
    meta
}

fn u64_at(img: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(img[off..off + 8].try_into().unwrap())
}

fn put_u64(img: &mut [u8], off: usize, v: u64) {
    img[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn reseal(img: &mut [u8], n: usize, salt: u32) {
    seal((&mut img[n * B..(n + 1) * B]).try_into().unwrap(), salt);
}

fn diff_cli(meta: &Path, extra: &[&str]) -> Output {
    Command::new(lvmsync_bin())
        .args(["diff", "--thin-metadata"])
        .arg(meta)
        .args(extra)
        .args(["--snap1", "1", "--snap2", "2"])
        .output()
        .unwrap()
}

/// `thin_dump` of the image succeeds (it verifies the superblock and every node's checksum).
fn assert_tools_accept(meta: &Path) {
    let out = Command::new("thin_dump").arg(meta).output().unwrap();
    assert!(
        out.status.success(),
        "thin_dump rejects the patched image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn needs_check_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let meta = restored(dir.path());
    // Unflagged, the same image diffs fine.
    assert_eq!(lvmsync_diff(&meta, Some(1), 2), thin_delta(&meta, 1, 2));

    let mut img = std::fs::read(&meta).unwrap();
    let flags = u32::from_le_bytes(img[4..8].try_into().unwrap());
    img[4..8].copy_from_slice(&(flags | 1).to_le_bytes());
    reseal(&mut img, 0, SUPERBLOCK_CSUM_XOR);
    std::fs::write(&meta, &img).unwrap();
    assert_tools_accept(&meta);

    let out = diff_cli(&meta, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "source error: {stderr}");
    assert!(out.stdout.is_empty(), "no extents printed");
    for needle in [
        meta.to_str().unwrap(),
        "NEEDS_CHECK",
        "lvconvert --repair",
        "thin_check",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Hold a metadata snapshot in `img` whose mapping tree has devices 1 and 2 swapped: a copy of
/// the top-level mapping leaf with the two subtree roots exchanged, and a superblock copy (space
/// map roots zeroed, as the kernel's `reserve_metadata_snap` does) pointing at it, both in free
/// blocks at the end of the image; block 0 records the copy as the held root.
fn hold_swapped_snapshot(img: &mut [u8]) {
    let nr = img.len() / B;
    let (leaf_at, sb_at) = (nr - 2, nr - 1);
    assert!(
        img[leaf_at * B..].iter().all(|b| *b == 0),
        "the last two blocks of the restored image are free"
    );
    let top = u64_at(img, 320) as usize * B;
    let header = |off: usize| u32::from_le_bytes(img[top + off..top + off + 4].try_into().unwrap());
    let (flags, n, max) = (header(4), header(16) as usize, header(20) as usize);
    assert_eq!(
        (flags, n),
        (2, 2),
        "the top level is one leaf holding devices 1 and 2"
    );
    let mut leaf = img[top..top + B].to_vec();
    let values = 32 + 8 * max;
    let (r1, r2) = (u64_at(&leaf, values), u64_at(&leaf, values + 8));
    put_u64(&mut leaf, values, r2);
    put_u64(&mut leaf, values + 8, r1);
    put_u64(&mut leaf, 8, leaf_at as u64);
    img[leaf_at * B..(leaf_at + 1) * B].copy_from_slice(&leaf);
    reseal(img, leaf_at, BTREE_CSUM_XOR);

    let mut copy = img[..B].to_vec();
    put_u64(&mut copy, 8, sb_at as u64);
    copy[64..320].fill(0);
    put_u64(&mut copy, 320, leaf_at as u64);
    img[sb_at * B..(sb_at + 1) * B].copy_from_slice(&copy);
    reseal(img, sb_at, SUPERBLOCK_CSUM_XOR);
    put_u64(img, 56, sb_at as u64);
    reseal(img, 0, SUPERBLOCK_CSUM_XOR);
}

#[test]
fn metadata_snap_reads_the_held_roots() {
    let dir = tempfile::tempdir().unwrap();
    let meta = restored(dir.path());

    // No snapshot held yet: --metadata-snap is refused (source error), the live read works.
    let out = diff_cli(&meta, &["--metadata-snap"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(meta.to_str().unwrap()) && stderr.contains("no metadata snapshot"),
        "{stderr}"
    );

    let mut img = std::fs::read(&meta).unwrap();
    hold_swapped_snapshot(&mut img);
    std::fs::write(&meta, &img).unwrap();

    let live = lvmsync_diff(&meta, Some(1), 2);
    let held = lvmsync_diff_with(&meta, &["--metadata-snap"], Some(1), 2);
    assert_eq!(live, thin_delta(&meta, 1, 2), "live roots, as before");
    assert_eq!(
        held,
        thin_delta_with(&meta, &["-m"], 1, 2),
        "held roots: thin_delta -m agrees"
    );
    // The held tree has the devices swapped: its diff is the live one reversed.
    assert_eq!(held, lvmsync_diff(&meta, Some(2), 1));
    assert_ne!(held, live);
    let kinds = |cs: &lvmsync::ChangeSet, k: ExtentKind| {
        cs.extents().iter().filter(|e| e.kind == k).count()
    };
    assert!(kinds(&live, ExtentKind::Added) > 0 && kinds(&live, ExtentKind::Removed) > 0);
    assert_eq!(
        kinds(&held, ExtentKind::Added),
        kinds(&live, ExtentKind::Removed)
    );
    // Everything mapped in device 2 of the held snapshot is device 1's mappings.
    assert_eq!(
        lvmsync_diff_with(&meta, &["--metadata-snap"], None, 2),
        lvmsync_diff(&meta, None, 1)
    );
}
