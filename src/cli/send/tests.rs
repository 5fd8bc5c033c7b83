//! The refinement choice of `send --since`, on real files standing in for the older
//! snapshot's device (a regular file is never read-only in the kernel's sense: "writable").

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
