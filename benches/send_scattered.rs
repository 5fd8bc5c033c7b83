//! Side-by-side benchmark of the sender's reads of scattered small extents (run with
//! `cargo bench --bench send_scattered`): `send_changes` of 5,000 random 4 KiB extents of a
//! 1 GiB file (as a classic snapshot's 4 KiB COW chunks at 0.5 % changed), into a sink,
//! against plain sorted `pread`s of the same extents from one thread: the floor of a reader
//! that reads them one after another. Both start from a cold page cache (the file's pages
//! dropped with `POSIX_FADV_DONTNEED` after an `fsync`). The sender hints its next extents to
//! the kernel (`src/stream/prefetch.rs`), so it has many reads in flight and can beat the
//! plain reads even while it hashes and frames every extent; `ratio` is plain time / send time.
//!
//! `BENCH_DIR` (default `/var/tmp`) holds the 1 GiB file; rounds run interleaved.

#[path = "bench_support/mod.rs"]
mod bench_support;

use lvmsync::stream::{send_changes, EncodeOptions, Fingerprint, Header};
use lvmsync::units::Bytes;
use lvmsync::{ChangeSet, Extent, ExtentKind};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

const SIZE: u64 = 1 << 30;
const EXTENTS: usize = 5000;
const ROUNDS: usize = 5;

fn main() {
    let dir = tempfile::Builder::new()
        .prefix("lvmsync-bench")
        .tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .unwrap();
    let path = dir.path().join("src.img");
    write_random(&path);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut chunks: Vec<u64> = (0..EXTENTS)
        .map(|_| bench_support::next_random(&mut rng) % (SIZE / 4096))
        .collect();
    chunks.sort_unstable();
    chunks.dedup();
    let changes = ChangeSet::from_extents(
        Bytes(4096),
        chunks
            .iter()
            .map(|c| Extent::new(c * 4096, 4096, ExtentKind::Changed)),
    )
    .unwrap();
    let header = Header {
        source: path.display().to_string(),
        source_uuid: String::new(),
        device_size: Bytes(SIZE),
        base_size: Bytes(SIZE),
        block_size: Bytes(4096),
        base: Fingerprint::NONE,
        target: Fingerprint::NONE,
        created_unix: 1,
        touched_bytes: changes.changed_bytes(),
    };
    let plain = || {
        let f = File::open(&path).unwrap();
        let mut buf = vec![0u8; 4096];
        for e in changes.extents() {
            f.read_exact_at(&mut buf, e.offset.0).unwrap();
        }
    };
    let send = || {
        send_changes(
            &path,
            &changes,
            &header,
            std::io::sink(),
            "sink",
            EncodeOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
    };
    let (mut p, mut s) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let time = |f: &dyn Fn()| {
            drop_cache(&path);
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        };
        if round % 2 == 0 {
            p.push(time(&plain));
            s.push(time(&send));
        } else {
            s.push(time(&send));
            p.push(time(&plain));
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (pm, sm, pb, sb) = (med(&mut p), med(&mut s), p[0], s[0]);
    println!(
        "| {} extents of 4 KiB, cold | plain sorted preads | send_changes | ratio (plain / send) |",
        changes.extents().len()
    );
    println!("|---|---|---|---|");
    println!(
        "| median of {ROUNDS} | {:.3} s | {:.3} s | {:.2}× |",
        pm,
        sm,
        pm / sm
    );
    println!("| best | {pb:.3} s | {sb:.3} s | {:.2}× |", pb / sb);
}

/// A 1 GiB file of pseudo-random bytes, made durable.
fn write_random(path: &Path) {
    let mut f = File::create(path).unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..SIZE >> 20 {
        bench_support::fill_random(&mut buf, &mut rng);
        f.write_all(&buf).unwrap();
    }
    f.sync_all().unwrap();
}

/// Drop the file's pages from the page cache, so the next reads go to the disk.
fn drop_cache(path: &Path) {
    let f = File::open(path).unwrap();
    f.sync_all().unwrap();
    nix::fcntl::posix_fadvise(
        &f,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .unwrap();
}
