//! The kernel-made scaling benchmark of the thin diff (ignored by default; see
//! docs/performance.md): a dm thin pool in the guest, timed against `thin_delta`.

use super::{diff_json, extents, merge, BLOCK};
use lvmsync::thin::live::diff_pool_devices_with_stats;
use lvmsync_vm_tests::{run, run_status};
use std::path::Path;

mod kernel_meta;
mod node_cost;

/// dm devices of the scaling benchmark, removed on drop (even when it panics).
struct DmDevices(Vec<String>);

impl Drop for DmDevices {
    fn drop(&mut self) {
        for name in self.0.iter().rev() {
            let _ = run_status("dmsetup", &["remove", "--retry", name]);
        }
    }
}

/// Best wall time of `n` runs of `f`.
fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> (std::time::Duration, T) {
    let mut best = std::time::Duration::MAX;
    let mut last = None;
    for _ in 0..n {
        let t = std::time::Instant::now();
        last = Some(f());
        best = best.min(t.elapsed());
    }
    (best, last.unwrap())
}

/// The blocks rewritten for `per_mille` of `blocks`: runs of `run_len` blocks at a fixed
/// prime stride, the same sequence every time, so a larger share includes the smaller ones.
fn rewritten(blocks: u64, per_mille: u64, run_len: u64) -> std::collections::BTreeSet<u64> {
    let runs = blocks / run_len;
    let mut set = std::collections::BTreeSet::new();
    let mut k = 0;
    while (set.len() as u64) < blocks * per_mille / 1000 {
        let start = k * 7919 % runs * run_len;
        set.extend(start..start + run_len);
        k += 1;
    }
    set
}

/// Kernel-made metadata at scale (a benchmark, not run by default): a dm thin pool (no LVM)
/// with `LVMSYNC_BENCH_BLOCKS` (default 100,000) mapped blocks, snapshot 1, then 0.1%, 1%
/// and 10% of the blocks rewritten (cumulative, in runs of `LVMSYNC_BENCH_RUN` blocks,
/// default 16 = 1 MiB; 1 = every change a lone block) with snapshots 2, 3, 4 after each step. Each
/// diff against snapshot 1 runs live (library, through a reserved metadata snapshot) and
/// offline on one `_tmeta` copy with the release `lvmsync` binary and with `thin_delta`,
/// side by side; results are checked against the ground truth (the rewritten blocks) first.
/// Run (docs/performance.md): `vm-tests/run --disk 12G -- target/release/deps/guest-<hash>
/// --ignored --nocapture --test-threads=1 thin_diff::scaling::kernel_made_scaling`.
#[test]
#[ignore = "benchmark; needs vm-tests/run --disk 12G (see docs/performance.md)"]
fn kernel_made_scaling() {
    use std::os::unix::fs::FileExt;
    lvmsync_vm_tests::require_guest();
    let blocks: u64 = std::env::var("LVMSYNC_BENCH_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let disk = std::env::var("VM_DISKS").unwrap_or_default();
    let data = disk
        .split_whitespace()
        .next()
        .expect("run with vm-tests/run --disk 12G")
        .to_string();
    let meta = lvmsync_vm_tests::LoopDevice::new(64);
    let data_sectors = run("blockdev", &["--getsz", &data]).trim().to_string();
    let mut devs = DmDevices(Vec::new());
    let pool = "lvsbench-pool".to_string();
    let table = format!(
        "0 {data_sectors} thin-pool {} {data} 128 0 1 skip_block_zeroing",
        meta.path
    );
    run("dmsetup", &["create", &pool, "--table", &table]);
    devs.0.push(pool.clone());
    run("dmsetup", &["message", &pool, "0", "create_thin 0"]);
    let thin = "lvsbench-thin".to_string();
    let thin_table = format!("0 {} thin /dev/mapper/{pool} 0", blocks * BLOCK / 512);
    run("dmsetup", &["create", &thin, "--table", &thin_table]);
    devs.0.push(thin.clone());
    let dev = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/mapper/{thin}"))
        .unwrap();
    let write_blocks = |bs: &mut dyn Iterator<Item = u64>, byte: u8| {
        for b in bs {
            dev.write_all_at(&[byte; 4096], b * BLOCK).unwrap();
        }
        dev.sync_all().unwrap();
    };
    let snap = |id: u64| {
        run("dmsetup", &["suspend", &thin]);
        run(
            "dmsetup",
            &["message", &pool, "0", &format!("create_snap {id} 0")],
        );
        run("dmsetup", &["resume", &thin]);
    };
    let t = std::time::Instant::now();
    write_blocks(&mut (0..blocks), 1);
    snap(1);
    println!("mapped {blocks} blocks in {:.1?}", t.elapsed());

    // Rewrite runs of `run` blocks spread over the device (cumulative from step to step).
    let run_len: u64 = std::env::var("LVMSYNC_BENCH_RUN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let steps = [(1u64, 2u64), (10, 3), (100, 4)]; // per mille, snapshot id
    println!("rewrites in runs of {run_len} blocks");
    for &(per_mille, id) in &steps {
        let todo: Vec<u64> = rewritten(blocks, per_mille, run_len).into_iter().collect();
        write_blocks(&mut todo.into_iter(), 2 + id as u8);
        snap(id);
    }
    // One metadata copy under a reserved metadata snapshot, for the offline runs. It goes on a
    // loop device: thin_delta opens with O_DIRECT, which the guest's tmpfs refuses.
    let copy = lvmsync_vm_tests::LoopDevice::new(64);
    let copy_s = copy.path.clone();
    run("dmsetup", &["message", &pool, "0", "reserve_metadata_snap"]);
    run(
        "dd",
        &[
            &format!("if={}", meta.path),
            &format!("of={copy_s}"),
            "bs=1M",
            "iflag=direct",
            "oflag=direct",
            "status=none",
        ],
    );
    run("dmsetup", &["message", &pool, "0", "release_metadata_snap"]);

    let (t_exec, _) = best_of(3, || run("thin_delta", &["-V"]));
    println!(
        "thin_delta exec alone (thin_delta -V): {:.1} ms",
        t_exec.as_secs_f64() * 1e3
    );
    println!(
        "\n| changed | extents | thin_delta | thin_delta minus exec | lvmsync CLI | lvmsync \
         in-process | speed-up (in-process vs thin_delta minus exec) | lvmsync live | nodes \
         read | shared subtrees skipped |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &(per_mille, id) in &steps {
        let done = rewritten(blocks, per_mille, run_len);
        let want = merge(done.iter().map(|b| (*b, "changed")));
        let (t_live, (cs, stats)) = best_of(3, || {
            diff_pool_devices_with_stats(&pool, Path::new(&meta.path), Some(1), id, false).unwrap()
        });
        assert_eq!(
            extents(&serde_json::to_value(&cs).unwrap()),
            want,
            "live, snapshot {id}"
        );
        let (s2, snap2) = ("1".to_string(), id.to_string());
        let (t_off, off) = best_of(3, || {
            diff_json(&[
                "--thin-metadata",
                &copy_s,
                "--snap1",
                &s2,
                "--snap2",
                &snap2,
            ])
        });
        assert_eq!(off, want, "offline, snapshot {id}");
        let (t_delta, delta) = best_of(3, || {
            run("thin_delta", &["--snap1", "1", "--snap2", &snap2, &copy_s])
        });
        let differing: u64 = delta
            .lines()
            .filter(|l| l.contains("<different"))
            .filter_map(|l| {
                l.split("length=\"")
                    .nth(1)?
                    .split('"')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        assert_eq!(differing, done.len() as u64, "thin_delta, snapshot {id}");
        // In-process on the same copy: no exec over the 9p share, which costs lvmsync's large
        // debug-info binary far more than thin_delta's under TCG.
        let (t_lib, _) = best_of(3, || {
            let src = lvmsync::thin::FileSource::open(Path::new(&copy_s)).unwrap();
            let sb = lvmsync::thin::Superblock::read(&src, 0).unwrap();
            lvmsync::thin::diff::diff_devices(&src, &sb, Some(1), id).unwrap()
        });
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let work = t_delta.saturating_sub(t_exec);
        println!(
            "| {:.1}% | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1}x | {:.1} ms | {} | {} |",
            per_mille as f64 / 10.0,
            want.len(),
            ms(t_delta),
            ms(work),
            ms(t_off),
            ms(t_lib),
            work.as_secs_f64() / t_lib.as_secs_f64(),
            ms(t_live),
            stats.nodes_read,
            stats.shared_subtrees_skipped
        );
    }
    let (t_full, (_, full)) = best_of(3, || {
        diff_pool_devices_with_stats(&pool, Path::new(&meta.path), None, 1, false).unwrap()
    });
    println!(
        "full walk of snapshot 1 (live): {:.1} ms, {} nodes",
        t_full.as_secs_f64() * 1e3,
        full.nodes_read
    );
    drop(dev);
}
