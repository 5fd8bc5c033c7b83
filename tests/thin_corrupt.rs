//! Corrupted thin-pool metadata: an error that names the file, never a panic, never a hang.
//!
//! A real `thin_restore`d image is damaged on purpose: a proptest mutation target over the
//! whole reader (random bit flips, overwritten header fields with absurd counts, optionally
//! with checksums recomputed so the structural checks behind them are reached, truncation),
//! plus one test per named defect: checksum mismatch, cycle, absurd count, unsorted keys,
//! truncation, unknown version / incompatible flags / bad magic, and the CLI's exit code.

mod thin_support;

use lvmsync::thin::checksum::{seal, BTREE_CSUM_XOR, SUPERBLOCK_CSUM_XOR};
use lvmsync::thin::diff::diff_devices;
use lvmsync::thin::{MemorySource, Superblock};
use lvmsync::Error;
use proptest::prelude::*;
use std::sync::OnceLock;
use thin_support::{lvmsync_bin, meta_bytes_for, restore, Device};

const B: usize = 4096;

/// A thin_restore'd image (only its used blocks): dev 1 with 20,000 mappings (a multi-level
/// tree), dev 2 a changed copy, dev 3 small.
fn image() -> &'static Vec<u8> {
    static IMG: OnceLock<Vec<u8>> = OnceLock::new();
    IMG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("pool.meta");
        let d1: Vec<(u64, u64, u32)> = (0..20_000u64).map(|v| (v * 2, v + 100, 0)).collect();
        let mut d2 = d1.clone();
        for (i, m) in d2.iter_mut().enumerate().filter(|(i, _)| i % 97 == 0) {
            m.1 = 50_000 + i as u64;
        }
        let d3 = vec![(5, 7, 0), (6, 8, 0)];
        let devs = [
            Device { id: 1, maps: d1 },
            Device { id: 2, maps: d2 },
            Device { id: 3, maps: d3 },
        ];
        restore(dir.path(), &meta, &devs, 2, meta_bytes_for(&devs));
        let bytes = std::fs::read(&meta).unwrap();
        let used = bytes
            .chunks(B)
            .rposition(|c| c.iter().any(|b| *b != 0))
            .unwrap()
            + 1;
        bytes[..used * B].to_vec()
    })
}

fn u64_at(img: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(img[off..off + 8].try_into().unwrap())
}

/// Block of thin device `dev`'s mapping tree root, found by reading the image directly.
fn device_root(img: &[u8], dev: u64) -> usize {
    let top = u64_at(img, 320) as usize * B;
    let n = u32::from_le_bytes(img[top + 16..top + 20].try_into().unwrap()) as usize;
    let max = u32::from_le_bytes(img[top + 20..top + 24].try_into().unwrap()) as usize;
    let i = (0..n)
        .find(|i| u64_at(img, top + 32 + 8 * i) == dev)
        .unwrap();
    u64_at(img, top + 32 + 8 * max + 8 * i) as usize
}

/// Recompute block `n`'s checksum with the salt of its type.
fn reseal(img: &mut [u8], n: usize) {
    let block: &mut [u8; B] = (&mut img[n * B..(n + 1) * B]).try_into().unwrap();
    seal(
        block,
        if n == 0 {
            SUPERBLOCK_CSUM_XOR
        } else {
            BTREE_CSUM_XOR
        },
    );
}

/// Every read lvmsync does on an image: diffs both ways and "everything mapped".
fn read_all(img: Vec<u8>) -> Result<(), Error> {
    let src = MemorySource::new("damaged.meta", img);
    let sb = Superblock::read(&src, 0)?;
    diff_devices(&src, &sb, Some(1), 2)?;
    diff_devices(&src, &sb, Some(2), 1)?;
    diff_devices(&src, &sb, None, 3)?;
    diff_devices(&src, &sb, Some(3), 1)?;
    Ok(())
}

/// The error message of reading a damaged image (which must fail as corrupt).
fn corrupt_message(img: Vec<u8>) -> String {
    match read_all(img) {
        Err(e @ Error::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("damaged.meta: corrupt thin-pool metadata"),
                "{msg}"
            );
            assert!(msg.contains("full sync"), "{msg}");
            msg
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[derive(Debug, Clone)]
enum Damage {
    /// XOR a byte.
    Flip(usize, u8),
    /// Overwrite a 4-byte field (counts, flags, sizes) with a chosen value.
    Field(usize, u32),
}

fn damage() -> impl Strategy<Value = Damage> {
    let blocks = image().len() / B;
    let offset = prop_oneof![0..64usize, 0..B, 300..370usize];
    prop_oneof![
        (0..blocks, offset.clone(), 1..=255u8)
            .prop_map(move |(b, o, x)| Damage::Flip(b * B + o, x)),
        (
            0..blocks,
            (0..16usize).prop_map(|i| i * 4),
            prop_oneof![Just(0u32), Just(u32::MAX), Just(1u32 << 31), any::<u32>()]
        )
            .prop_map(|(b, o, v)| Damage::Field(b * B + o, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// Whatever the damage, the reader returns Ok or a clear error; it never panics or hangs.
    #[test]
    fn damaged_metadata_never_panics(
        damages in prop::collection::vec(damage(), 1..6),
        recompute_checksums in any::<bool>(),
        truncate_to in prop::option::weighted(0.15, 0.0..1.0f64),
    ) {
        let mut img = image().clone();
        for d in &damages {
            let at = match *d {
                Damage::Flip(at, x) => { img[at] ^= x; at }
                Damage::Field(at, v) => { img[at..at + 4].copy_from_slice(&v.to_le_bytes()); at }
            };
            if recompute_checksums {
                reseal(&mut img, at / B);
            }
        }
        if let Some(f) = truncate_to {
            img.truncate((img.len() as f64 * f) as usize);
        }
        match read_all(img) {
            Ok(()) => {}
            Err(Error::Corrupt { source_name, .. }) => prop_assert_eq!(source_name, "damaged.meta"),
            // Damage to a device id key makes a requested device disappear.
            Err(Error::InvalidArgument(m)) => prop_assert!(m.contains("no thin device"), "{}", m),
            // Damage to the superblock's flags word can set NEEDS_CHECK, which is refused
            // with the repair to run rather than read.
            Err(Error::Unusable { source_name, reason }) => {
                prop_assert_eq!(source_name, "damaged.meta");
                prop_assert!(reason.contains("NEEDS_CHECK"), "{}", reason);
            }
            Err(e) => prop_assert!(false, "unexpected error kind: {e}"),
        }
    }
}

#[test]
fn intact_image_reads() {
    read_all(image().clone()).unwrap();
}

#[test]
fn checksum_mismatch_names_tree_and_node_path() {
    let mut img = image().clone();
    let root = device_root(&img, 1);
    img[root * B + 40] ^= 0x10;
    let msg = corrupt_message(img);
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(
        msg.contains("mapping tree of thin device 1, node path"),
        "{msg}"
    );
    assert!(msg.contains(&root.to_string()), "{msg}");
}

#[test]
fn cycle_is_detected() {
    let mut img = image().clone();
    let root = device_root(&img, 1);
    assert_eq!(
        u32::from_le_bytes(img[root * B + 4..root * B + 8].try_into().unwrap()),
        1,
        "internal"
    );
    let max = u32::from_le_bytes(img[root * B + 20..root * B + 24].try_into().unwrap()) as usize;
    // Child 0 points back at the root itself.
    let off = root * B + 32 + 8 * max;
    img[off..off + 8].copy_from_slice(&(root as u64).to_le_bytes());
    reseal(&mut img, root);
    assert!(corrupt_message(img).contains("cycle"));
}

#[test]
fn absurd_entry_count_is_refused() {
    let mut img = image().clone();
    let root = device_root(&img, 1);
    img[root * B + 16..root * B + 20].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut img, root);
    assert!(corrupt_message(img).contains("nr_entries 4294967295 exceeds max_entries"));
}

#[test]
fn unsorted_keys_are_refused() {
    let mut img = image().clone();
    let root = device_root(&img, 1);
    let k1 = root * B + 32 + 8;
    img[k1..k1 + 8].copy_from_slice(&0u64.to_le_bytes());
    reseal(&mut img, root);
    assert!(corrupt_message(img).contains("not strictly increasing"));
}

#[test]
fn truncated_metadata_is_refused() {
    let mut img = image().clone();
    img.truncate(img.len() / 2);
    let msg = corrupt_message(img);
    assert!(
        msg.contains("past the end") || msg.contains("out of range"),
        "{msg}"
    );
}

#[test]
fn superblock_checks() {
    for (off, value, expect) in [
        (40usize, 3u32, "unsupported metadata version 3"),
        (360, 1, "incompatible feature flags"),
        (32, 1, "bad superblock magic"),
        (340, 16, "metadata block size"),
        (336, 0, "data block size"),
    ] {
        let mut img = image().clone();
        img[off..off + 4].copy_from_slice(&value.to_le_bytes());
        reseal(&mut img, 0);
        let msg = corrupt_message(img);
        assert!(msg.contains(expect), "{expect}: {msg}");
    }
    let mut img = image().clone();
    img[100] ^= 1;
    assert!(corrupt_message(img).contains("checksum mismatch"));
}

#[test]
fn version_1_is_read() {
    let mut img = image().clone();
    img[40..44].copy_from_slice(&1u32.to_le_bytes());
    reseal(&mut img, 0);
    read_all(img).unwrap();
}

#[test]
fn cli_reports_corruption_with_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.meta");
    let mut img = image().clone();
    let root = device_root(&img, 2);
    img[root * B + 64] ^= 0xff;
    std::fs::write(&path, img).unwrap();
    let out = std::process::Command::new(lvmsync_bin())
        .args(["diff", "--snap1", "1", "--snap2", "2", "--thin-metadata"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("bad.meta: corrupt thin-pool metadata"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty());
    let missing = std::process::Command::new(lvmsync_bin())
        .args(["diff", "--snap1", "1", "--snap2", "42", "--thin-metadata"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no thin device with id 42"));
}
