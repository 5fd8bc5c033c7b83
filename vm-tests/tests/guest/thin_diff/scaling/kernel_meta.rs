//! Generation of kernel-made thin metadata at 1,000,000 mapped blocks (a benchmark input, not
//! run by default; see docs/performance.md "Kernel-made metadata at 1,000,000 blocks").
//!
//! The pool's DATA device is a dm `zero` target (writes are dropped, nothing is stored), so
//! only the metadata is real: a million mappings cost the kernel's btree inserts and no data
//! I/O. The metadata image is written to a host-shared file, so the comparison with
//! `thin_delta` runs on the host (benches/thin_vs_thin_delta.rs) and in the guest without
//! generating it again.

use super::{best_of, diff_json, merge, rewritten, DmDevices, BLOCK};
use lvmsync_vm_tests::run;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

/// `O_DIRECT` on x86_64 Linux (the guest's architecture).
const O_DIRECT: i32 = 0o40000;

/// Thin device ids of the generated metadata (docs/performance.md lists the same):
/// device 0 is the origin, 1 its snapshot before any rewrite (the common base), 2 a second
/// snapshot of 0 that takes the scattered rewrites; 3/4/5 are snapshots of 0 after 0.1%, 1%,
/// 10% clustered rewrites (runs of [`CLUSTER`] blocks), 6/7/8 snapshots of 2 after 0.1%, 1%,
/// 10% scattered single-block rewrites; 9 is taken after the metadata snapshot is held.
pub const STEPS: [(u64, u64, u64); 6] = [
    // (per mille, run length in blocks, snapshot id)
    (1, CLUSTER, 3),
    (10, CLUSTER, 4),
    (100, CLUSTER, 5),
    (1, 1, 6),
    (10, 1, 7),
    (100, 1, 8),
];

/// Clustered rewrites come in runs of this many blocks (16 × 64 KiB = 1 MiB).
pub const CLUSTER: u64 = 16;

/// A buffer of `len` bytes aligned to 4 KiB (for `O_DIRECT`), filled with `byte`.
fn aligned(len: usize, byte: u8) -> (Vec<u8>, usize) {
    let v = vec![byte; len + 4096];
    let off = (4096 - v.as_ptr() as usize % 4096) % 4096;
    (v, off)
}

/// Writes `len` bytes at every block of `blocks` (`O_DIRECT`) from [`WRITERS`] threads, then
/// flushes. Each write that maps a new block waits for the pool's worker to insert the mapping,
/// so one writer is latency-bound (~200 writes/s under TCG); concurrent writes are batched.
fn write_each(dev: &File, blocks: impl Iterator<Item = u64>, len: usize, byte: u8) {
    let blocks: Vec<u64> = blocks.collect();
    let (buf, off) = aligned(len, byte);
    let buf = &buf[off..off + len];
    std::thread::scope(|s| {
        for part in blocks.chunks(blocks.len().div_ceil(WRITERS).max(1)) {
            s.spawn(move || {
                for b in part {
                    dev.write_all_at(buf, b * BLOCK).unwrap();
                }
            });
        }
    });
    dev.sync_all().unwrap();
}

/// Concurrent writer threads of [`write_each`].
const WRITERS: usize = 8;

/// Maps blocks `range` with writes of `per_write` blocks each (one 4 KiB write at the start of
/// every block when `per_write` is 1; otherwise big writes spanning `per_write` whole blocks;
/// `range` starts and ends at multiples of `per_write`). Returns the rate in blocks per second.
fn provision(dev: &File, range: std::ops::Range<u64>, per_write: u64) -> f64 {
    let t = Instant::now();
    let n = range.end - range.start;
    let len = if per_write == 1 {
        4096
    } else {
        per_write * BLOCK
    };
    write_each(dev, range.step_by(per_write as usize), len as usize, 1);
    n as f64 / t.elapsed().as_secs_f64()
}

fn open_direct(path: &str) -> File {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_DIRECT)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"))
}

/// Builds the metadata described at [`STEPS`] and copies it to `$LVMSYNC_BENCH_OUT` (a file on
/// a `--rw` share). Run (docs/performance.md):
/// `vm-tests/run --mem 3G --module dm-zero --disk 1G --rw DIR -- env LVMSYNC_BENCH_OUT=DIR/thin-kernel-1M.meta
/// target/release/deps/guest-<hash> --ignored --nocapture --test-threads=1
/// thin_diff::scaling::kernel_meta::generate_kernel_metadata`.
#[test]
#[ignore = "benchmark input; needs vm-tests/run --mem 3G --module dm-zero --disk 1G --rw DIR (see docs/performance.md)"]
fn generate_kernel_metadata() {
    lvmsync_vm_tests::require_guest();
    let blocks: u64 = std::env::var("LVMSYNC_BENCH_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let out = std::env::var("LVMSYNC_BENCH_OUT").expect("set LVMSYNC_BENCH_OUT");
    let meta = std::env::var("VM_DISKS")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .expect("run with vm-tests/run --disk 1G")
        .to_string();
    let mut devs = DmDevices(Vec::new());
    // Data: the origin, the rewrites and some spare, all dropped by the zero target.
    let data_blocks = blocks * 3 / 2 + 1024;
    let data = "lvsgen-data".to_string();
    run(
        "dmsetup",
        &[
            "create",
            &data,
            "--table",
            &format!("0 {} zero", data_blocks * 128),
        ],
    );
    devs.0.push(data.clone());
    let pool = "lvsgen-pool".to_string();
    let table = format!(
        "0 {} thin-pool {meta} /dev/mapper/{data} 128 0 1 skip_block_zeroing",
        data_blocks * 128
    );
    run("dmsetup", &["create", &pool, "--table", &table]);
    devs.0.push(pool.clone());
    let msg = |m: &str| {
        run("dmsetup", &["message", &pool, "0", m]);
    };
    let activate = |devs: &mut DmDevices, id: u64| -> String {
        let name = format!("lvsgen-thin{id}");
        let t = format!("0 {} thin /dev/mapper/{pool} {id}", blocks * 128);
        run("dmsetup", &["create", &name, "--table", &t]);
        devs.0.push(name.clone());
        name
    };
    // Snapshot `origin` (active as `name`) as `id`: suspended so its writes are committed.
    let snap = |name: &str, id: u64, origin: u64| {
        run("dmsetup", &["suspend", name]);
        msg(&format!("create_snap {id} {origin}"));
        run("dmsetup", &["resume", name]);
    };
    msg("create_thin 0");
    let thin0 = activate(&mut devs, 0);
    let dev0 = open_direct(&format!("/dev/mapper/{thin0}"));

    // Provisioning: measure both ways on 2% of the blocks each, then use the faster one.
    assert_eq!(
        blocks % 64,
        0,
        "LVMSYNC_BENCH_BLOCKS must be a multiple of 64"
    );
    let cal = (blocks / 50 / 64).max(1) * 64;
    let small = provision(&dev0, 0..cal, 1);
    let big = provision(&dev0, cal..2 * cal, 64);
    println!("provisioning: one 4 KiB write per block {small:.0} blocks/s; 4 MiB writes (64 blocks) {big:.0} blocks/s ({WRITERS} writer threads each)");
    let t = Instant::now();
    let rate = provision(&dev0, 2 * cal..blocks, if big > small { 64 } else { 1 });
    println!(
        "mapped the other {} blocks in {:.1?} ({rate:.0} blocks/s)",
        blocks - 2 * cal,
        t.elapsed()
    );
    snap(&thin0, 1, 0);
    snap(&thin0, 2, 0);
    let thin2 = activate(&mut devs, 2);
    let dev2 = open_direct(&format!("/dev/mapper/{thin2}"));
    println!("snapshots 1 and 2 taken, device 2 active");

    // Rewrites of whole blocks (no copy of the old data), cumulative per distribution.
    for &(per_mille, run_len, id) in &STEPS {
        let (dev, name, origin) = if run_len == 1 {
            (&dev2, &thin2, 2)
        } else {
            (&dev0, &thin0, 0)
        };
        let t = Instant::now();
        let todo = rewritten(blocks, per_mille, run_len);
        // One write per run (the runs start at multiples of their length).
        let starts = todo.iter().copied().filter(|b| b % run_len == 0);
        write_each(dev, starts, (run_len * BLOCK) as usize, id as u8);
        snap(name, id, origin);
        println!(
            "snapshot {id}: {} blocks rewritten ({:.1}%, runs of {run_len}) in {:.1?}",
            todo.len(),
            per_mille as f64 / 10.0,
            t.elapsed()
        );
    }
    // Hold a metadata snapshot, then change the live state after it (device 9, more rewrites of
    // device 0), so that reading through the held root and through the live roots differ.
    msg("reserve_metadata_snap");
    write_each(&dev0, 0..CLUSTER, BLOCK as usize, 0x99);
    snap(&thin0, 9, 0);
    drop((dev0, dev2));
    drop(devs); // removes the thin devices and the pool: the metadata is committed and quiet
    let t = Instant::now();
    run(
        "dd",
        &[
            &format!("if={meta}"),
            &format!("of={out}"),
            "bs=4M",
            "conv=sparse",
            "status=none",
        ],
    );
    println!("metadata copied to {out} in {:.1?}", t.elapsed());
    run("thin_check", &[&out]);
    println!("thin_check {out}: clean");
}

/// The extents of `thin_delta` output (`<different|right_only|left_only begin= length=>`), as
/// `(offset, length, kind)` in bytes, merged like `lvmsync diff`.
fn thin_delta_extents(xml: &str) -> Vec<(u64, u64, String)> {
    let mut blocks = Vec::new();
    for line in xml.lines() {
        let kind = ["different", "right_only", "left_only"]
            .iter()
            .position(|t| line.trim_start().starts_with(&format!("<{t} ")));
        let Some(kind) = kind else { continue };
        let attr = |name: &str| -> u64 {
            let key = format!(" {name}=\"");
            let at = line.find(&key).unwrap() + key.len();
            line[at..].split('"').next().unwrap().parse().unwrap()
        };
        let k = ["changed", "added", "removed"][kind];
        blocks.extend((attr("begin")..attr("begin") + attr("length")).map(|b| (b, k)));
    }
    merge(blocks.into_iter())
}

/// A loop device holding a copy of the generated metadata `$LVMSYNC_BENCH_META` (`thin_delta`
/// and `O_DIRECT` need a block device: tmpfs refuses `O_DIRECT`).
pub fn loop_copy() -> lvmsync_vm_tests::LoopDevice {
    lvmsync_vm_tests::require_guest();
    let file = std::env::var("LVMSYNC_BENCH_META").expect("set LVMSYNC_BENCH_META");
    let mib = std::fs::metadata(&file).unwrap().len().div_ceil(1 << 20);
    let copy = lvmsync_vm_tests::LoopDevice::new(mib);
    let of = format!("of={}", copy.path);
    let iff = format!("if={file}");
    run("dd", &[&iff, &of, "bs=4M", "conv=sparse", "status=none"]);
    copy
}

/// The guest half of the comparison on the generated metadata (`$LVMSYNC_BENCH_META`, e.g. the
/// cached file on a `--rw` share): device 1 against 3..=8 with `thin_delta`, the release
/// `lvmsync` CLI and the library in-process, on one loop-device copy (`thin_delta` opens it
/// with `O_DIRECT`), best of 3 each, results checked equal first. Run (docs/performance.md):
/// `vm-tests/run --mem 3G --rw DIR -- env LVMSYNC_BENCH_META=DIR/thin-kernel-1M.meta
/// target/release/deps/guest-<hash> --ignored --nocapture --test-threads=1
/// thin_diff::scaling::kernel_meta::compare_kernel_metadata`.
#[test]
#[ignore = "benchmark; needs the generated metadata (see docs/performance.md)"]
fn compare_kernel_metadata() {
    let copy = loop_copy();
    let (t_exec, _) = best_of(3, || run("thin_delta", &["-V"]));
    println!(
        "thin_delta exec alone (thin_delta -V): {:.1} ms",
        t_exec.as_secs_f64() * 1e3
    );
    let lib = |old: Option<u64>, new: u64| {
        let src = lvmsync::thin::FileSource::open(Path::new(&copy.path)).unwrap();
        let sb = lvmsync::thin::Superblock::read(&src, 0).unwrap();
        lvmsync::thin::diff::diff_devices(&src, &sb, old, new).unwrap()
    };
    println!(
        "\n| changed | extents | thin_delta | thin_delta minus exec | lvmsync CLI | lvmsync \
         in-process | speed-up (in-process vs thin_delta minus exec) | nodes read | nodes of \
         two full walks |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &(per_mille, run_len, id) in &STEPS {
        let snap2 = id.to_string();
        let delta_args = ["--snap1", "1", "--snap2", &snap2, &copy.path];
        let (t_delta, delta) = best_of(3, || run("thin_delta", &delta_args));
        let want = thin_delta_extents(&delta);
        let cli_args = [
            "--thin-metadata",
            &copy.path,
            "--snap1",
            "1",
            "--snap2",
            &snap2,
        ];
        let (t_cli, cli) = best_of(3, || diff_json(&cli_args));
        assert_eq!(cli, want, "lvmsync CLI vs thin_delta, device {id}");
        let (t_lib, (_, stats)) = best_of(3, || lib(Some(1), id));
        let full = lib(None, 1).1.nodes_read + lib(None, id).1.nodes_read;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let work = t_delta.saturating_sub(t_exec);
        let what = if run_len == 1 {
            "scattered"
        } else {
            "clustered"
        };
        println!(
            "| {:.1}% {what} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1}x | {} | {full} |",
            per_mille as f64 / 10.0,
            want.len(),
            ms(t_delta),
            ms(work),
            ms(t_cli),
            ms(t_lib),
            work.as_secs_f64() / t_lib.as_secs_f64(),
            stats.nodes_read,
        );
    }
}
