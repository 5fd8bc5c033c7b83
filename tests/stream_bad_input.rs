//! Bad input through the real binary: each case must fail with a clear message and its
//! documented exit code, and leave the destination byte-identical, the state file unchanged
//! and no journal behind — both for `apply <file>` (verified before writing) and for
//! `receive` from a pipe (verified per record, rolled back on a later failure).

mod stream_util;
use std::path::{Path, PathBuf};
use stream_util::*;

const SIZE: usize = 6 << 20;

struct Setup {
    dir: tempfile::TempDir,
    dest: PathBuf,
    st: PathBuf,
    delta: Vec<u8>,
    v1: PathBuf,
    v2: PathBuf,
}

/// dest holds v0 (applied by a full sync, so the state file names v0); delta = v0 → v1.
fn setup() -> Setup {
    let dir = tmp();
    let mut img = make_image(SIZE, 77);
    let v0 = at(&dir, "v0.img");
    write(&v0, &img);
    let mut rng = Rng(1234);
    mutate(&mut img, &mut rng, 30);
    let v1 = at(&dir, "v1.img");
    write(&v1, &img);
    mutate(&mut img, &mut rng, 3);
    let v2 = at(&dir, "v2.img");
    write(&v2, &img);
    let (dest, st) = (at(&dir, "dest.img"), at(&dir, "st"));
    let full = at(&dir, "full.lvd");
    send_delta(None, &v0, &full);
    ok(&apply(&full, &dest, &st, &[]));
    let d01 = at(&dir, "d01.lvd");
    send_delta(Some(&v0), &v1, &d01);
    let delta = std::fs::read(&d01).unwrap();
    assert!(
        delta.len() > 500_000,
        "delta should span several records: {}",
        delta.len()
    );
    Setup {
        dir,
        dest,
        st,
        delta,
        v1,
        v2,
    }
}

/// The state directory's files and contents, except lock files (empty, and created by the
/// first run that takes the destination's lock).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        // The lock, and the spare journal a refused apply takes and sets aside again (it
        // rewrites its head), are bookkeeping, not the destination's state.
        .filter(|p| p.extension().is_none_or(|x| x != "lock" && x != "spare"))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

/// Feed `stream` both ways; each must exit `code` with `needle` in stderr and change nothing.
fn refused(s: &Setup, stream: &[u8], code: i32, needle: &str) {
    let dest_before = std::fs::read(&s.dest).unwrap();
    let state_before = snapshot(&s.st);
    let file = at(&s.dir, "bad.lvd");
    std::fs::write(&file, stream).unwrap();
    let via_file = apply(&file, &s.dest, &s.st, &[]);
    // Slow mode makes every record its own batch, so a late failure really has written
    // earlier records and must roll them back.
    let via_pipe = receive_env(
        stream,
        &s.dest,
        &s.st,
        &[],
        &[("LVMSYNC_TEST_SLOW_MS", "1")],
    );
    for (how, o) in [("apply", via_file), ("receive", via_pipe)] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{how}: {err}");
        assert!(err.contains(needle), "{how}: expected {needle:?} in {err}");
        assert!(
            std::fs::read(&s.dest).unwrap() == dest_before,
            "{how} changed the destination"
        );
        assert_eq!(
            snapshot(&s.st),
            state_before,
            "{how} changed the state directory"
        );
    }
}

#[test]
fn truncated_streams_are_refused() {
    let s = setup();
    let n = s.delta.len();
    for cut in [0, 5, 9, 30, n / 3, n / 2, n - 73, n - 1] {
        let needle = if cut < 8 {
            "not an lvmsync delta"
        } else {
            "truncated"
        };
        refused(&s, &s.delta[..cut], 5, needle);
    }
    // A pipe cut late has had earlier records written: they must have been rolled back.
    let o = receive_env(
        &s.delta[..n - 73],
        &s.dest,
        &s.st,
        &[],
        &[("LVMSYNC_TEST_SLOW_MS", "1")],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("rolled back unchanged"));
}

#[test]
fn flipped_bytes_in_header_record_and_trailer_are_refused() {
    let s = setup();
    let n = s.delta.len();
    for (pos, needle) in [
        (3, "not an lvmsync delta"),
        (20, "header"),
        (n / 2, "checksum"),
        (n * 3 / 4, "checksum"),
        (n - 10, "checksum"),
        (n - 40, "checksum"),
    ] {
        let mut bad = s.delta.clone();
        bad[pos] ^= 0x01;
        refused(&s, &bad, 5, needle);
    }
}

#[test]
fn trailing_garbage_and_unknown_version_are_refused() {
    let s = setup();
    let mut extra = s.delta.clone();
    extra.push(0);
    refused(&s, &extra, 5, "bytes follow the trailer");
    let mut v3 = s.delta.clone();
    v3[8] = 3;
    refused(&s, &v3, 5, "version 3 is not supported");
}

#[test]
fn wrong_base_is_refused_unless_forced() {
    let s = setup();
    // A v1 → v2 delta while the destination holds v0.
    let d12 = at(&s.dir, "d12.lvd");
    send_delta(Some(&s.v1), &s.v2, &d12);
    refused(&s, &std::fs::read(&d12).unwrap(), 7, "--force");
    // Without a state file the destination's contents decide, and they are v0 too.
    std::fs::remove_dir_all(&s.st).unwrap();
    std::fs::create_dir(&s.st).unwrap();
    refused(&s, &std::fs::read(&d12).unwrap(), 7, "no state file");
    // The right delta is accepted by content, and then v1 → v2 by state.
    let d01 = at(&s.dir, "d01.lvd");
    ok(&apply(&d01, &s.dest, &s.st, &[]));
    ok(&apply(&d12, &s.dest, &s.st, &[]));
    assert_eq!(file_hash(&s.dest), file_hash(&s.v2));
    // --force applies a delta over a state it was not made for.
    ok(&apply(&d01, &s.dest, &s.st, &["--force"]));
}

#[test]
fn too_small_destination_is_refused_or_grown() {
    let s = setup();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&s.dest)
        .unwrap();
    f.set_len((SIZE / 2) as u64).unwrap();
    drop(f);
    refused(&s, &s.delta, 4, "--grow");
    let missing = at(&s.dir, "missing.img");
    let o = receive(&s.delta, &missing, &s.st, &[]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("run a full sync first"));
    assert!(!missing.exists());
}
