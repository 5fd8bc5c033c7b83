//! Block-hash compare against ground truth: random images with known edited bytes, compared by
//! the library and by `lvmsync diff --base OLD NEW [--json]`; size mismatches, bad block sizes
//! and unreadable inputs.

use lvmsync::blockhash::{compare_and_fingerprint, compare_files, hash_blocks, hash_file};
use lvmsync::stream::fingerprint::content_fingerprint;
use lvmsync::units::Bytes;
use lvmsync::{ChangeSet, ExtentKind};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Flip bits at each distinct position of `at` once (so each of those bytes really changes:
/// a position drawn twice is not flipped back) and return the edited image.
fn edit(old: &[u8], new_len: usize, at: &[usize]) -> Vec<u8> {
    let mut new = old.to_vec();
    new.resize(new_len, 0x5a);
    for &i in at.iter().collect::<BTreeSet<_>>() {
        if i < new.len() {
            new[i] ^= 0x81;
        }
    }
    new
}

/// The expected extents: blocks holding an edited byte within the common length, merged, then
/// the longer input's tail.
fn truth(old_len: u64, new_len: u64, bs: u64, at: &[usize]) -> Vec<(u64, u64, ExtentKind)> {
    let common = old_len.min(new_len);
    let blocks: BTreeSet<u64> = at
        .iter()
        .map(|&i| i as u64)
        .filter(|&i| i < common)
        .map(|i| i / bs)
        .collect();
    let mut out: Vec<(u64, u64, ExtentKind)> = Vec::new();
    for b in blocks {
        let (off, len) = (b * bs, bs.min(common - b * bs));
        match out.last_mut() {
            Some(last) if last.0 + last.1 == off => last.1 += len,
            _ => out.push((off, len, ExtentKind::Changed)),
        }
    }
    if new_len > common {
        out.push((common, new_len - common, ExtentKind::Added));
    } else if old_len > common {
        out.push((common, old_len - common, ExtentKind::Removed));
    }
    out
}

fn triples(cs: &ChangeSet) -> Vec<(u64, u64, ExtentKind)> {
    cs.extents()
        .iter()
        .map(|e| (e.offset.0, e.length.0, e.kind))
        .collect()
}

fn lvmsync_diff(old: &Path, new: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lvmsync"))
        .arg("diff")
        .args(extra)
        .arg("--base")
        .arg(old)
        .arg(new)
        .output()
        .unwrap()
}

struct Case {
    dir: tempfile::TempDir,
    old_len: u64,
    new_len: u64,
    at: Vec<usize>,
}

impl Case {
    fn new(old_len: usize, new_len: usize, at: Vec<usize>, seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let old = random_bytes(old_len, seed);
        std::fs::write(dir.path().join("old.img"), &old).unwrap();
        std::fs::write(dir.path().join("new.img"), edit(&old, new_len, &at)).unwrap();
        Case {
            dir,
            old_len: old_len as u64,
            new_len: new_len as u64,
            at,
        }
    }
    fn old(&self) -> std::path::PathBuf {
        self.dir.path().join("old.img")
    }
    fn new_path(&self) -> std::path::PathBuf {
        self.dir.path().join("new.img")
    }
    fn truth(&self, bs: u64) -> Vec<(u64, u64, ExtentKind)> {
        truth(self.old_len, self.new_len, bs, &self.at)
    }
}

#[test]
fn multi_segment_images_with_known_edits() {
    // 9 MiB + a bit: several 4 MiB read segments, a short last block.
    let len = 9 * 1024 * 1024 + 1234;
    let at = vec![
        0,
        1,
        65535,
        65536,
        4 * 1024 * 1024 - 1,
        4 * 1024 * 1024,
        7_000_001,
        len - 1,
    ];
    let case = Case::new(len, len, at, 7);
    for bs in [512u64, 4096, 65536, 1 << 20] {
        let cs = compare_files(&case.old(), &case.new_path(), Bytes(bs)).unwrap();
        assert_eq!(triples(&cs), case.truth(bs), "block size {bs}");
        assert_eq!(cs.block_size(), Bytes(bs));
    }
}

#[test]
fn cli_json_and_text_match_ground_truth() {
    let len = 3 * 1024 * 1024 + 100;
    let case = Case::new(len, len + 5000, vec![10, 200_000, 3 * 1024 * 1024 + 50], 11);
    let expect = case.truth(4096);
    let out = lvmsync_diff(
        &case.old(),
        &case.new_path(),
        &["--json", "--block-size", "4096"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: ChangeSet = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(triples(&got), expect);
    assert_eq!(v["block_size"], 4096);
    assert_eq!(v["extents_count"], expect.len());
    assert_eq!(v["changed_bytes"], expect.iter().map(|e| e.1).sum::<u64>());

    let out = lvmsync_diff(&case.old(), &case.new_path(), &["--block-size", "4096"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<String> = expect
        .iter()
        .map(|(o, l, k)| format!("{o} {l} {k}"))
        .collect();
    assert_eq!(text.lines().take(lines.len()).collect::<Vec<_>>(), lines);
}

#[test]
fn size_mismatch_counts_the_tail() {
    let grown = Case::new(100_000, 300_000, vec![99_999, 150_000], 3);
    let cs = compare_files(&grown.old(), &grown.new_path(), Bytes(4096)).unwrap();
    assert_eq!(triples(&cs), grown.truth(4096));
    assert_eq!(cs.extents().last().unwrap().kind, ExtentKind::Added);

    let shrunk = Case::new(300_000, 100_000, vec![5], 4);
    let cs = compare_files(&shrunk.old(), &shrunk.new_path(), Bytes(4096)).unwrap();
    assert_eq!(triples(&cs), shrunk.truth(4096));
    assert_eq!(cs.extents().last().unwrap().kind, ExtentKind::Removed);

    let empty = Case::new(0, 10_000, vec![], 5);
    let cs = compare_files(&empty.old(), &empty.new_path(), Bytes(512)).unwrap();
    assert_eq!(triples(&cs), vec![(0, 10_000, ExtentKind::Added)]);
}

#[test]
fn identical_images_have_no_changes() {
    let case = Case::new(1_000_000, 1_000_000, vec![], 9);
    let cs = compare_files(&case.old(), &case.new_path(), Bytes(65536)).unwrap();
    assert!(cs.is_empty());
}

#[test]
fn block_size_is_validated() {
    let case = Case::new(4096, 4096, vec![], 1);
    for bad in ["0", "256", "1000", "33554432"] {
        let out = lvmsync_diff(&case.old(), &case.new_path(), &["--block-size", bad]);
        assert_eq!(out.status.code(), Some(2), "block size {bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("power of two"));
    }
}

#[test]
fn unreadable_inputs_are_named() {
    let case = Case::new(4096, 4096, vec![], 1);
    let missing = case.dir.path().join("missing.img");
    let out = lvmsync_diff(&case.old(), &missing, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.img"));
    assert!(out.stdout.is_empty());
    let err = compare_files(case.dir.path(), &case.old(), Bytes(4096)).unwrap_err();
    assert!(
        err.to_string()
            .contains(&case.dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn read_error_mid_walk_is_reported_not_hung() {
    // A sysfs attribute claims 4096 bytes but reads far fewer: the reader thread's read fails
    // after the walk started, and the error must come back naming the file.
    let sysfs = Path::new("/sys/devices/system/cpu/online");
    assert_eq!(std::fs::metadata(sysfs).unwrap().len(), 4096);
    let err = compare_files(sysfs, sysfs, Bytes(512)).unwrap_err();
    assert!(
        err.to_string().contains("/sys/devices/system/cpu/online"),
        "{err}"
    );
    assert!(hash_file(sysfs, Bytes(512)).is_err());
}

#[test]
fn hash_list_matches_blake3_of_each_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.img");
    let data = random_bytes(5 * 1024 * 1024 + 77, 42);
    std::fs::write(&path, &data).unwrap();
    let bs = 65536;
    let list = hash_file(&path, Bytes(bs as u64)).unwrap();
    let expect: Vec<blake3::Hash> = data.chunks(bs).map(blake3::hash).collect();
    assert_eq!(list.hashes, expect);
    assert_eq!(list.len, Bytes(data.len() as u64));
    let mut seen = Vec::new();
    hash_blocks(&path, Bytes(bs as u64), |i, _| seen.push(i)).unwrap();
    assert_eq!(seen, (0..expect.len() as u64).collect::<Vec<_>>());
}

/// A sparse file of `len` bytes holding `runs` of `(offset, bytes)` written over holes (cut
/// at `len`).
fn sparse_file(path: &Path, len: u64, runs: &[(u64, &[u8])]) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    let mut bytes = vec![0u8; len as usize];
    for &(at, run) in runs.iter().filter(|r| r.0 < len) {
        let run = &run[..run.len().min((len - at) as usize)];
        f.write_all_at(run, at).unwrap();
        bytes[at as usize..at as usize + run.len()].copy_from_slice(run);
    }
    bytes
}

#[test]
fn one_pass_compare_of_sparse_images_finds_changes_and_both_fingerprints() {
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.img"), dir.path().join("new.img"));
    let data = random_bytes(3 * MIB as usize, 21);
    // Old: holes, a data run, an explicitly written zero run (data that reads as zero).
    let zeros = vec![0u8; MIB as usize];
    let old_bytes = sparse_file(
        &old,
        11 * MIB + 100,
        &[(2 * MIB, &data[..MIB as usize]), (6 * MIB, &zeros)],
    );
    // New: longer; the same run at 2 MiB plus an edit, data over old's holes and zero run,
    // and zeros written over old's hole at 9 MiB (equal: both read as zero).
    let mut edited = data[..MIB as usize].to_vec();
    edited[12345] ^= 0x55;
    for new_len in [13 * MIB + 7, 5 * MIB + 3] {
        let new_bytes = sparse_file(
            &new,
            new_len,
            &[
                (2 * MIB, &edited),
                (4 * MIB + 4096, &data[MIB as usize..MIB as usize + 10_000]),
                (6 * MIB + 65536, &data[..5]),
                (9 * MIB, &zeros),
            ],
        );
        for bs in [4096u64, 65536, 4 * MIB] {
            let found = compare_and_fingerprint(&old, &new, Bytes(bs)).unwrap();
            let edits: Vec<usize> = (0..old_bytes.len().max(new_bytes.len()))
                .filter(|&i| old_bytes.get(i) != new_bytes.get(i))
                .collect();
            let want = truth(old_bytes.len() as u64, new_len, bs, &edits);
            assert_eq!(
                triples(&found.changes),
                want,
                "len {new_len} block size {bs}"
            );
            assert_eq!(
                triples(&compare_files(&old, &new, Bytes(bs)).unwrap()),
                want
            );
            let (fo, fnew) = found.fingerprints.unwrap();
            assert_eq!(fo, content_fingerprint(&old, found.old_len).unwrap());
            assert_eq!(fnew, content_fingerprint(&new, found.new_len).unwrap());
            assert_ne!(fo, fnew);
        }
        // Hole blocks hash as zero blocks.
        let list = hash_file(&new, Bytes(65536)).unwrap();
        let expect: Vec<blake3::Hash> = new_bytes.chunks(65536).map(blake3::hash).collect();
        assert_eq!(list.hashes, expect);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_edits_are_found(
        old_len in 0usize..40_000,
        grow in -5000i64..5000,
        at in prop::collection::vec(0usize..45_000, 0..20),
        bs_shift in 9u32..14,
        seed in any::<u64>(),
    ) {
        let new_len = (old_len as i64 + grow).max(0) as usize;
        let case = Case::new(old_len, new_len, at, seed);
        let bs = 1u64 << bs_shift;
        let cs = compare_files(&case.old(), &case.new_path(), Bytes(bs)).unwrap();
        prop_assert_eq!(triples(&cs), case.truth(bs));
    }
}
