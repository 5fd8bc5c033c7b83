//! Side-by-side benchmark of sub-block refinement (run with `cargo bench --bench send_refine`):
//! a thin-like delta of two images, the old one pseudo-random, the new one with 2% of it
//! rewritten (half as scattered 4 KiB writes, half as 1 MiB runs: the mix of
//! scripts/bench-peers-guest.sh) and the changes listed as whole 64 KiB blocks, as a thin pool
//! reports them; plus 2% of blocks `added` (zero in the old image, as an unmapped thin block
//! reads; in the new one half of them hold one written 4 KiB unit, half are written whole). `whole`: `send_changes` of those blocks (what `send --since --no-refine` and
//! lvmsync before refinement do); `refined`: `refine` against the old image, then
//! `send_changes` of what is left (`send --since`). Both into a sink, page cache warm, rounds
//! interleaved, each round also timing the refinement pass alone; the stream bytes are exact,
//! the times are the host's (not QEMU/TCG's).
//!
//! `LVMSYNC_BENCH_MIB` (default 1024) and `LVMSYNC_BENCH_ROUNDS` (default 3); `BENCH_DIR`
//! (default `/var/tmp`) holds the two images.

#[path = "bench_support/mod.rs"]
mod bench_support;

use lvmsync::stream::refine::refine;
use lvmsync::stream::{send_changes, EncodeOptions, Fingerprint, Header, SendSummary};
use lvmsync::units::Bytes;
use lvmsync::{ChangeSet, Extent, ExtentKind};
use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

const BLOCK: u64 = 65536;

fn main() {
    let (mib, rounds) = bench_support::mib_and_rounds();
    let size = mib << 20;
    let dir = tempfile::Builder::new()
        .prefix("lvmsync-bench")
        .tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .unwrap();
    let (old, new) = (dir.path().join("old.img"), dir.path().join("new.img"));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 1 << 20];
    {
        let f = std::fs::File::create(&old).unwrap();
        for m in 0..mib {
            bench_support::fill_random(&mut buf, &mut rng);
            f.write_all_at(&buf, m << 20).unwrap();
        }
    }
    let n_blocks = size / BLOCK;
    let mut added = BTreeSet::new();
    while (added.len() as u64) < n_blocks / 50 {
        added.insert(bench_support::next_random(&mut rng) % n_blocks);
    }
    {
        let f = std::fs::OpenOptions::new().write(true).open(&old).unwrap();
        for b in &added {
            f.write_all_at(&[0; BLOCK as usize], b * BLOCK).unwrap();
        }
    }
    std::fs::copy(&old, &new).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&new).unwrap();
    for (i, b) in added.iter().enumerate() {
        let (at, len) = match i % 2 {
            0 => (
                b * BLOCK + bench_support::next_random(&mut rng) % 16 * 4096,
                4096,
            ),
            _ => (b * BLOCK, BLOCK),
        };
        bench_support::fill_random(&mut buf[..len as usize], &mut rng);
        f.write_all_at(&buf[..len as usize], at).unwrap();
    }
    let mut blocks = BTreeSet::new();
    let mut write = |off: u64, len: u64, rng: &mut u64| {
        bench_support::fill_random(&mut buf[..len as usize], rng);
        f.write_all_at(&buf[..len as usize], off).unwrap();
        blocks.extend(off / BLOCK..(off + len).div_ceil(BLOCK));
    };
    let budget = size / 50;
    for _ in 0..budget / 2 / 4096 {
        let off = bench_support::next_random(&mut rng) % (size / 4096) * 4096;
        write(off, 4096, &mut rng);
    }
    for _ in 0..budget / 2 / (1 << 20) {
        let off = (bench_support::next_random(&mut rng) % mib) << 20;
        write(off, 1 << 20, &mut rng);
    }
    blocks.extend(&added);
    let kind = |b: &u64| match added.contains(b) {
        true => ExtentKind::Added,
        false => ExtentKind::Changed,
    };
    let changes = ChangeSet::from_extents(
        Bytes(BLOCK),
        blocks
            .iter()
            .map(|b| Extent::new(b * BLOCK, BLOCK, kind(b))),
    )
    .unwrap();
    let send = |changes: &ChangeSet| -> SendSummary {
        let header = Header {
            source: new.display().to_string(),
            source_uuid: String::new(),
            device_size: Bytes(size),
            base_size: Bytes(size),
            block_size: Bytes(BLOCK),
            base: Fingerprint::NONE,
            target: Fingerprint::NONE,
            created_unix: 1,
            touched_bytes: changes.changed_bytes(),
        };
        let opts = EncodeOptions::default();
        send_changes(
            &new,
            changes,
            &header,
            std::io::sink(),
            "sink",
            opts,
            &mut |_, _| {},
        )
        .unwrap()
        .1
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let whole = || send(&changes);
    let refined = || send(&refine(&changes, &new, &old, workers).unwrap().changes);
    let pass = || {
        let t = Instant::now();
        refine(&changes, &new, &old, workers).unwrap();
        t.elapsed().as_secs_f64()
    };
    warm(&old, &new);
    let (mut w, mut r, mut p) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ws, mut rs) = (SendSummary::default(), SendSummary::default());
    for round in 0..rounds {
        let time = |f: &dyn Fn() -> SendSummary, s: &mut SendSummary, v: &mut Vec<f64>| {
            let t = Instant::now();
            *s = f();
            v.push(t.elapsed().as_secs_f64());
        };
        if round % 2 == 0 {
            time(&whole, &mut ws, &mut w);
            time(&refined, &mut rs, &mut r);
        } else {
            time(&refined, &mut rs, &mut r);
            time(&whole, &mut ws, &mut w);
        }
        p.push(pass());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (wm, rm, pm) = (med(&mut w), med(&mut r), med(&mut p));
    println!(
        "{mib} MiB images, {} changed 64 KiB blocks ({} of them added; {} bytes), {rounds} \
         rounds, page cache warm",
        blocks.len(),
        added.len(),
        changes.changed_bytes().0
    );
    println!("| | whole blocks | refined | ratio (whole / refined) |");
    println!("|---|---|---|---|");
    println!(
        "| data bytes | {} | {} | {:.2}× |",
        ws.data_bytes,
        rs.data_bytes,
        ws.data_bytes as f64 / rs.data_bytes as f64
    );
    let (wb, rb) = (ws.totals.stream_bytes, rs.totals.stream_bytes);
    println!(
        "| stream bytes | {wb} | {rb} | {:.2}× |",
        wb as f64 / rb as f64
    );
    println!(
        "| records | {} | {} | |",
        ws.totals.records, rs.totals.records
    );
    println!(
        "| send time, median | {wm:.3} s | {rm:.3} s | {:.2}× |",
        wm / rm
    );
    println!("| of which the refinement pass, median | | {pm:.3} s | |");
}

/// Read both images once, so every round starts with them in the page cache.
fn warm(old: &Path, new: &Path) {
    for p in [old, new] {
        std::io::copy(&mut std::fs::File::open(p).unwrap(), &mut std::io::sink()).unwrap();
    }
}
