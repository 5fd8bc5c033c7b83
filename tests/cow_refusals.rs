//! Exception stores lvmsync must refuse: each gives an error naming the store and the fix,
//! never a panic, and `lvmsync diff --cow-store` exits non-zero (3: unusable source).

mod cow_support;

use cow_support::{render, StoreSpec};
use lvmsync::cow::changes_from_file;
use std::path::Path;
use std::process::Command;

/// Write `bytes` to a file, check the library error and the CLI's exit code and message.
fn refused(bytes: &[u8], expect_in_message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vg-snap-cow");
    std::fs::write(&path, bytes).unwrap();
    let err = changes_from_file(&path).unwrap_err().to_string();
    let name = path.display().to_string();
    assert!(err.contains(&name), "error does not name the store: {err}");
    assert!(
        err.contains(expect_in_message),
        "{expect_in_message:?} not in: {err}"
    );
    assert!(
        err.contains("full resync") || err.contains("retry"),
        "no fix in: {err}"
    );
    cli_refuses(&path, expect_in_message);
}

fn cli_refuses(path: &Path, expect_in_message: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_lvmsync"))
        .args(["diff", "--cow-store"])
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "wrote output for a refused store");
    assert!(stderr.contains(&path.display().to_string()) && stderr.contains(expect_in_message));
}

fn spec() -> StoreSpec {
    StoreSpec::new(8, vec![5, 9, 2, 77])
}

#[test]
fn invalidated_snapshot() {
    let mut s = spec();
    s.valid = 0;
    refused(&s.to_bytes(), "marked invalid");
}

#[test]
fn never_formatted() {
    let mut s = spec();
    s.magic = 0;
    refused(&s.to_bytes(), "never formatted");
    refused(&[0u8; 64 * 1024], "never formatted");
}

#[test]
fn foreign_magic_and_unknown_version() {
    let mut s = spec();
    s.magic = 0x1234_5678;
    refused(&s.to_bytes(), "not \"SnAp\"");
    let mut s = spec();
    s.version = 2;
    refused(&s.to_bytes(), "version 2");
}

#[test]
fn chunk_size_not_a_power_of_two() {
    let mut s = spec();
    s.chunk_sectors = 8;
    let mut bytes = s.to_bytes();
    bytes[12..16].copy_from_slice(&12u32.to_le_bytes());
    refused(&bytes, "chunk size 12");
}

#[test]
fn store_ends_mid_area() {
    let bytes = spec().to_bytes();
    refused(&bytes[..4096 + 100], "metadata area 0");
    refused(&bytes[..10], "the header");
    // Area 0 exactly full and the store ends where area 1 would be.
    let s = StoreSpec::new(1, (0..32).collect());
    let (writes, _) = s.layout();
    let area1 = s.area_chunk(1) * 512;
    refused(&render(&writes, area1 + 256), "metadata area 1");
    refused(&render(&writes, area1), "metadata area 1");
    // Far into the store, several read-ahead buffers of areas past the start.
    let s = StoreSpec::new(1, (0..32 * 300).collect());
    let (writes, _) = s.layout();
    let area299 = s.area_chunk(299) * 512;
    refused(&render(&writes, area299 + 100), "metadata area 299");
}

#[test]
fn new_chunk_outside_the_store() {
    let s = spec();
    let mut recs = s.records();
    recs[2].1 = 1_000_000;
    let (w, len) = s.layout_with(&recs[..]);
    let (w, len) = (w, len.min(50 * 4096));
    refused(&render(&w, len), "past the end of the store");
}

#[test]
fn new_chunk_at_a_metadata_area() {
    let s = StoreSpec::new(1, (0..40).collect());
    for bad in [1, s.area_chunk(1)] {
        let mut recs = s.records();
        recs[3].1 = bad;
        let (w, len) = s.layout_with(&recs);
        refused(&render(&w, len), "is the header or a metadata area");
    }
}

#[test]
fn duplicate_old_chunk() {
    refused(
        &StoreSpec::new(8, vec![3, 8, 3]).to_bytes(),
        "origin chunk 3 has two exceptions",
    );
}

#[test]
fn old_chunk_beyond_64_bits() {
    refused(
        &StoreSpec::new(8, vec![u64::MAX / 4096]).to_bytes(),
        "beyond a 64-bit device",
    );
}

#[test]
fn unreadable_and_missing_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-cow");
    let err = changes_from_file(&missing).unwrap_err().to_string();
    assert!(err.contains("no-such-cow"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_lvmsync"))
        .args(["diff", "--cow-store"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    // A directory is not a store: reading it fails with an I/O error naming it.
    let err = changes_from_file(dir.path()).unwrap_err().to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}
