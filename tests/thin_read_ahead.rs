//! The read-ahead workers of `O_DIRECT` sources (`src/thin/ahead.rs`, the live path's way of
//! reading `_tmeta`): blocks the walk hinted are read and checksummed on worker threads and
//! handed to the walk as verified, and a bad block still fails with exactly the error it gives
//! without read-ahead (and through a buffered file, which reads ahead through the page cache).
//! Run on a real `thin_restore`d image.

mod thin_support;

use lvmsync::thin::diff::diff_devices;
use lvmsync::thin::source::{NodeChecksum, METADATA_BLOCK_SIZE};
use lvmsync::thin::{FileSource, MemorySource, MetadataSource, Superblock};
use std::path::{Path, PathBuf};
use thin_support::recording::Recording;
use thin_support::{meta_bytes_for, restore, Device};

const B: usize = METADATA_BLOCK_SIZE;

/// A `thin_restore`d image on a disk file system (`O_DIRECT` needs one; tmpfs refuses it):
/// device 1 with 30,000 mappings (a two-level tree), device 2 a copy with every 50th block
/// remapped. Returns the directory guard and the image path.
fn image() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let meta = dir.path().join("pool.meta");
    let d1: Vec<(u64, u64, u32)> = (0..30_000u64).map(|v| (v * 3, v + 10, 0)).collect();
    let mut d2 = d1.clone();
    for (i, m) in d2.iter_mut().enumerate().filter(|(i, _)| i % 50 == 0) {
        m.1 = 90_000 + i as u64;
    }
    let devs = [Device { id: 1, maps: d1 }, Device { id: 2, maps: d2 }];
    restore(dir.path(), &meta, &devs, 2, meta_bytes_for(&devs));
    (dir, meta)
}

/// The blocks the diff of 1 → 2 reads, in order (superblock and top-level nodes included).
fn nodes_read(meta: &Path) -> Vec<u64> {
    let file = FileSource::open(meta).unwrap();
    let rec = Recording::new(&file);
    let sb = Superblock::read(&rec, 0).unwrap();
    diff_devices(&rec, &sb, Some(1), 2).unwrap();
    rec.into_reads().into_iter().map(|(n, _)| n).collect()
}

/// The error message of the diff 1 → 2 through `src`.
fn diff_error(src: &dyn MetadataSource) -> String {
    let sb = Superblock::read(src, 0).unwrap();
    diff_devices(src, &sb, Some(1), 2).unwrap_err().to_string()
}

#[test]
fn bad_leaf_fails_the_same_through_the_workers() {
    let (_dir, meta) = image();
    let read = nodes_read(&meta);
    assert!(read.len() > 200, "a multi-level walk: {} nodes", read.len());
    let mut bytes = std::fs::read(&meta).unwrap();
    // A leaf near the end of the walk: its parent hinted it, so a worker reads it ahead.
    let bad = read[read.len() - 3] as usize;
    bytes[bad * B + 100] ^= 0x40;
    std::fs::write(&meta, &bytes).unwrap();
    let name = meta.display().to_string();
    let want = diff_error(&MemorySource::new(name, bytes));
    assert!(want.contains("checksum mismatch"), "{want}");
    assert!(want.contains(&format!("-> {bad}:")), "{want}");
    assert_eq!(diff_error(&FileSource::open(&meta).unwrap()), want);
    assert_eq!(diff_error(&FileSource::open_direct(&meta).unwrap()), want);
}

#[test]
fn hinted_nodes_come_back_verified_and_bad_ones_unchecked() {
    let (_dir, meta) = image();
    let read = nodes_read(&meta);
    let mut bytes = std::fs::read(&meta).unwrap();
    let nodes: Vec<u64> = read.iter().copied().filter(|&n| n != 0).collect();
    let bad = nodes[nodes.len() / 2];
    bytes[bad as usize * B + 200] ^= 1;
    std::fs::write(&meta, &bytes).unwrap();
    let src = FileSource::open_direct(&meta).unwrap();
    let mut buf = [0u8; B];
    // Not hinted: read by the caller, left for the caller to check.
    assert_eq!(
        src.read_node(nodes[0], &mut buf).unwrap(),
        NodeChecksum::Unchecked
    );
    src.prefetch(&nodes[1..]);
    for &n in &nodes[1..] {
        let checked = src.read_node(n, &mut buf).unwrap();
        let at = n as usize * B;
        assert_eq!(&buf[..], &bytes[at..at + B], "block {n}");
        // A block can be read by the caller before a worker reaches it (Unchecked), but a
        // bad block must never come back as verified.
        if n == bad {
            assert_eq!(checked, NodeChecksum::Unchecked);
        }
    }
    // Given time, the workers verify what they read ahead (polled: the machine may be busy).
    for &n in &nodes[nodes.len() - 3..] {
        let verified = (0..200).any(|_| {
            src.prefetch(&[n]);
            std::thread::sleep(std::time::Duration::from_millis(25));
            src.read_node(n, &mut buf).unwrap() == NodeChecksum::Verified
        });
        assert!(verified, "block {n} never came back verified");
    }
}

#[test]
fn more_hints_than_the_pool_holds_still_read_right() {
    let (_dir, meta) = image();
    let bytes = std::fs::read(&meta).unwrap();
    let src = FileSource::open_direct(&meta).unwrap();
    let all: Vec<u64> = (1..src.nr_blocks()).collect();
    assert!(all.len() > 4096, "{} blocks", all.len());
    // Hint everything (more than the 2048 blocks the pool holds), read every 7th block.
    src.prefetch(&all);
    let mut buf = [0u8; B];
    for &n in all.iter().step_by(7) {
        src.read_block(n, &mut buf).unwrap();
        let at = n as usize * B;
        assert_eq!(&buf[..], &bytes[at..at + B], "block {n}");
    }
    // Hints past the end are ignored; reads past the end are still refused.
    src.prefetch(&[src.nr_blocks(), u64::MAX]);
    assert!(src.read_block(src.nr_blocks(), &mut buf).is_err());
}
