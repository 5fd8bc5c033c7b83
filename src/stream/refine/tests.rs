//! Refinement on real image files: which units survive, and that workers and batches do not
//! change the answer.

use super::*;

const K64: u64 = 65536;

/// `n` bytes of blake3's output stream keyed by `seed` (incompressible, reproducible, never
/// a zero 4 KiB unit in practice).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

struct Images {
    _dir: tempfile::TempDir,
    old: std::path::PathBuf,
    new: std::path::PathBuf,
}

fn images(old: &[u8], new: &[u8]) -> Images {
    let dir = tempfile::tempdir().unwrap();
    let (o, n) = (dir.path().join("old.img"), dir.path().join("new.img"));
    std::fs::write(&o, old).unwrap();
    std::fs::write(&n, new).unwrap();
    Images {
        _dir: dir,
        old: o,
        new: n,
    }
}

fn set(extents: &[(u64, u64, ExtentKind)]) -> ChangeSet {
    let e = extents.iter().map(|&(o, l, k)| Extent::new(o, l, k));
    ChangeSet::from_extents(Bytes(K64), e).unwrap()
}

/// One 4 KiB unit differs in a 64 KiB changed block: only it is kept. An equal block goes
/// away. An added block (unmapped in the base, which reads zeroes there) keeps its non-zero
/// units; a removed one stays whole.
#[test]
fn keeps_exactly_the_differing_units() {
    let mut old = noise(1, 8 * K64 as usize);
    old[3 * K64 as usize..4 * K64 as usize].fill(0); // block 3: unmapped in the base
    let mut new = old.clone();
    new[8192 + 100] ^= 1; // block 0, unit 2
    let at = 3 * K64 as usize + 5 * 4096;
    new[at..at + 4096].copy_from_slice(&noise(2, 4096)); // its unit 5
    let img = images(&old, &new);
    let changes = set(&[
        (0, K64, ExtentKind::Changed),
        (K64, K64, ExtentKind::Changed), // equal
        (3 * K64, K64, ExtentKind::Added),
        (5 * K64, K64, ExtentKind::Removed),
    ]);
    let r = refine(&changes, &img.new, &img.old, 2).unwrap();
    assert_eq!(
        r.changes,
        set(&[
            (8192, 4096, ExtentKind::Changed),
            (3 * K64 + 5 * 4096, 4096, ExtentKind::Added),
            (5 * K64, K64, ExtentKind::Removed),
        ])
    );
    assert_eq!(r.compared, Bytes(3 * K64));
    assert_eq!(r.unchanged, Bytes(3 * K64 - 2 * 4096));
}

/// Units sit at multiples of 4 KiB on the device, whatever the extent's alignment; a unit
/// past the base's end always counts as different; neighbouring differing units merge.
#[test]
fn units_are_device_aligned_and_a_short_base_differs_past_its_end() {
    let new = noise(3, 40_000);
    let mut old = new[..30_000].to_vec();
    old[4096] ^= 0xff; // unit 1
    old[8191] ^= 0xff; // unit 1 too
    old[8192] ^= 0xff; // unit 2
    let img = images(&old, &new);
    // From 1000 (inside unit 0) to the end (40000, a short last unit).
    let r = refine(
        &set(&[(1000, 39_000, ExtentKind::Changed)]),
        &img.new,
        &img.old,
        1,
    )
    .unwrap();
    // Units 1-2 differ; 28672..30000 is equal but its unit reaches past the base's end.
    assert_eq!(
        r.changes,
        set(&[
            (4096, 8192, ExtentKind::Changed),
            (28672, 40_000 - 28672, ExtentKind::Changed)
        ])
    );
}

/// An added block of a base with an external origin: where the base is unmapped it reads the
/// origin's bytes, which the destination holds. Units equal to those are dropped; a unit the
/// newer snapshot zeroed is different from them and is kept (comparing with zeroes would have
/// dropped it and kept the equal ones).
#[test]
fn added_units_are_compared_with_the_bases_bytes_not_zeroes() {
    let old = noise(5, 2 * K64 as usize); // the external origin's bytes, read through the base
    let mut new = old.clone();
    new[K64 as usize + 4096..K64 as usize + 8192].fill(0); // block 1, unit 1 zeroed
    new[K64 as usize + 9 * 4096] ^= 1; // block 1, unit 9 written
    let img = images(&old, &new);
    let r = refine(
        &set(&[(K64, K64, ExtentKind::Added)]),
        &img.new,
        &img.old,
        1,
    )
    .unwrap();
    assert_eq!(
        r.changes,
        set(&[
            (K64 + 4096, 4096, ExtentKind::Added),
            (K64 + 9 * 4096, 4096, ExtentKind::Added),
        ])
    );
}

/// A source grown since the base: the added units at and past the base's end are kept even
/// when they are all zero, since the grown destination holds whatever was on its disk there.
/// Below the end, an added unit equal to the base (zeroes) is still dropped.
#[test]
fn added_units_past_the_bases_end_are_kept_even_when_zero() {
    let old = vec![0u8; 2 * K64 as usize]; // the base: 128 KiB, unmapped
    let mut new = vec![0u8; 4 * K64 as usize]; // grown to 256 KiB
    new[4096..8192].copy_from_slice(&noise(6, 4096)); // block 0, unit 1
    let img = images(&old, &new);
    let r = refine(
        &set(&[(0, 4 * K64, ExtentKind::Added)]),
        &img.new,
        &img.old,
        2,
    )
    .unwrap();
    assert_eq!(
        r.changes,
        set(&[
            (4096, 4096, ExtentKind::Added),
            (2 * K64, 2 * K64, ExtentKind::Added)
        ])
    );
    assert_eq!(r.unchanged, Bytes(2 * K64 - 4096));
}

/// Many extents over several batches: every worker count gives the same set as a plain
/// unit-by-unit compare.
#[test]
fn workers_and_batches_agree_with_a_plain_compare() {
    let size = 12 << 20;
    let old = noise(4, size);
    let mut new = old.clone();
    let mut x = 7u64;
    let mut extents = Vec::new();
    for b in 0..(size as u64 / K64) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if x >> 62 == 0 {
            continue; // unchanged block, not listed
        }
        extents.push((b * K64, K64, ExtentKind::Changed));
        for u in 0..16u64 {
            if (x >> (u + 8)) & 3 == 0 {
                new[(b * K64 + u * 4096 + (x >> 40) % 4096) as usize] ^= 0x5a;
            }
        }
    }
    let img = images(&old, &new);
    let changes = set(&extents);
    let mut want = Vec::new();
    for &(o, l, _) in &extents {
        for u in (o..o + l).step_by(4096) {
            let (a, b) = (u as usize, u as usize + 4096);
            if old[a..b] != new[a..b] {
                want.push((u, 4096, ExtentKind::Changed));
            }
        }
    }
    let want = set(&want);
    for workers in [1, 2, 5] {
        let r = refine(&changes, &img.new, &img.old, workers).unwrap();
        assert_eq!(r.changes, want, "{workers} workers");
    }
}

/// A base that can't be opened is an error naming it (the CLI checks readability first).
#[test]
fn an_unreadable_base_is_an_error_naming_it() {
    let img = images(&[1; 8192], &[2; 8192]);
    let missing = img.old.with_file_name("gone.img");
    let err = refine(
        &set(&[(0, 8192, ExtentKind::Changed)]),
        &img.new,
        &missing,
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("gone.img"), "{err}");
}
