//! The plan of `send --since`: the refinement choice, on real files standing in for the
//! older snapshot's device (a regular file is never read-only in the kernel's sense:
//! "writable"), and the grown part of a volume.

use super::refining::{refine_choice, Whole};
use super::*;

fn base() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old-snapshot");
    std::fs::write(&path, [0u8; 8192]).unwrap();
    (dir, path)
}

/// Classic snapshots' default 4 KiB chunks (and smaller) are sent as listed without reading
/// the older snapshot; 8 KiB chunks and thin blocks go on to the readability and read-only
/// checks; --refine refines whatever the granularity.
#[test]
fn changes_in_4k_chunks_are_not_refined_unless_forced() {
    let (_dir, path) = base();
    for g in [512, 4096] {
        assert!(
            matches!(refine_choice(&path, false, Bytes(g)), Err(Whole::Fine(Bytes(x))) if x == g),
            "{g}-byte chunks"
        );
    }
    for g in [8192, 65536] {
        assert!(matches!(
            refine_choice(&path, false, Bytes(g)),
            Err(Whole::Writable)
        ));
        assert!(refine_choice(&path, true, Bytes(g)).is_ok());
    }
    assert!(refine_choice(&path, true, Bytes(4096)).is_ok());
}

/// A missing device is unreadable, forced or not; with 4 KiB chunks it is not even opened.
#[test]
fn an_unreadable_base_is_reported_as_such() {
    let (_dir, path) = base();
    let gone = path.with_file_name("gone");
    assert!(matches!(
        refine_choice(&gone, true, Bytes(65536)),
        Err(Whole::Unreadable(_))
    ));
    assert!(matches!(
        refine_choice(&gone, false, Bytes(4096)),
        Err(Whole::Fine(_))
    ));
}

fn set(extents: &[(u64, u64, ExtentKind)]) -> ChangeSet {
    let e = extents.iter().map(|&(o, l, k)| Extent::new(o, l, k));
    ChangeSet::from_extents(Bytes(65536), e).unwrap()
}

/// A volume grown from 1 MiB to 2 MiB since the older snapshot: a thin delta sends what the
/// newer snapshot maps in the grown part and discards the rest of it; a classic one sends the
/// whole grown part (the older store covers only the old size).
#[test]
fn the_grown_part_of_a_volume_is_all_written() {
    const M: u64 = 1 << 20;
    let (c, a, r) = (ExtentKind::Changed, ExtentKind::Added, ExtentKind::Removed);
    let diff = set(&[(0, 65536, c), (M + 65536, 65536, a)]);
    let mapped = set(&[(M + 65536, 65536, a)]);
    assert_eq!(
        with_grown_thin_tail(&diff, &mapped, M, 2 * M).unwrap(),
        set(&[
            (0, 65536, c),
            (M, 65536, r),
            (M + 65536, 65536, a),
            (M + 131072, M - 131072, r)
        ])
    );
    let classic = set(&[(0, 65536, c)]);
    assert_eq!(
        with_grown_tail_as_data(&classic, M, 2 * M).unwrap(),
        set(&[(0, 65536, c), (M, M, c)])
    );
}

/// A thin volume shrunk without unmapping its tail, snapshotted (the older), then grown: the
/// blocks past the older's end that both snapshots map identically are in no side of the
/// diff, but the newer reads them, so they are sent as data, not discarded. A diff entry the
/// newer does not map there (`removed`) stays a discard.
#[test]
fn the_grown_part_sends_what_the_newer_maps_even_when_the_diff_omits_it() {
    const M: u64 = 1 << 20;
    let (c, a, r) = (ExtentKind::Changed, ExtentKind::Added, ExtentKind::Removed);
    let diff = set(&[(0, 65536, c), (M + 65536, 65536, r)]);
    // Mapped in the newer: a stale block at M (not in the diff) and one at 2M - 64 KiB.
    let mapped = set(&[(M, 65536, a), (2 * M - 65536, 65536, a)]);
    assert_eq!(
        with_grown_thin_tail(&diff, &mapped, M, 2 * M).unwrap(),
        set(&[
            (0, 65536, c),
            (M, 65536, a),
            (M + 65536, M - 131072, r),
            (2 * M - 65536, 65536, a)
        ])
    );
}

/// A source with an external origin: its removed extents become data to read, the rest stays.
#[test]
fn removed_extents_become_data() {
    let (c, a, r) = (ExtentKind::Changed, ExtentKind::Added, ExtentKind::Removed);
    let got = removed_as_data(&set(&[
        (0, 65536, a),
        (65536, 65536, r),
        (262144, 65536, r),
    ]));
    assert_eq!(
        got.unwrap(),
        set(&[(0, 65536, a), (65536, 65536, c), (262144, 65536, c)])
    );
}
