//! Thin diff speed: `lvmsync diff --thin-metadata` against `thin_delta` on the same
//! `thin_restore`d metadata, side by side in one run, as ratios.
//!
//! One metadata file holds an "old" device with `LVMSYNC_BENCH_MAPPED` (default 1,000,000)
//! mapped blocks and three newer devices with 0.1%, 1% and 10% of those blocks remapped, as
//! scattered single blocks. Each diff runs as a separate process (the released `lvmsync`
//! binary and `thin_delta`), best of `LVMSYNC_BENCH_RUNS` (default 5) interleaved runs each,
//! output read and discarded; both results are checked equal first. The metadata lives in /dev/shm so neither
//! tool waits on the disk (`thin_delta` reads with O_DIRECT, which would otherwise make it pay
//! for disk reads lvmsync gets from the page cache). Peak RSS comes from `/usr/bin/time -f %M`.
//!
//! A second table does the same on kernel-made metadata (shared subtrees), taken from the file
//! the guest generator caches (`LVMSYNC_BENCH_KERNEL_META`, default
//! `~/.cache/lvmsync/bench/thin-kernel-1M.meta`; skipped when absent, see
//! docs/performance.md); `LVMSYNC_BENCH_KERNEL_ONLY=1` runs only that table.
//!
//! Run: `cargo bench --bench thin_vs_thin_delta` (or build with `--no-run` and run the binary).

#[path = "../tests/thin_support/mod.rs"]
mod thin_support;

use lvmsync::thin::diff::diff_devices;
use lvmsync::thin::{FileSource, Superblock};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use thin_support::{lvmsync_bin, restore, thin_delta, Device};

/// Changed fractions of the table, in parts per 10,000, and their device ids.
const CASES: [(u64, u64); 3] = [(10, 2), (100, 3), (1000, 4)];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (splitmix64), so every run benchmarks the same pool.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Wall time and stdout of one run of `cmd`.
fn timed(mut cmd: Command) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let o = cmd.output().unwrap();
    let t = start.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (t, o.stdout)
}

/// Best wall times of `runs` interleaved runs of `a` and `b` (A, B, B, A, ...), so machine
/// load hits both alike.
fn best_interleaved(
    runs: u64,
    a: impl Fn() -> Command,
    b: impl Fn() -> Command,
) -> (Duration, Duration) {
    let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
    for r in 0..runs {
        let (first, second): (&dyn Fn() -> Command, &dyn Fn() -> Command) =
            if r % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let t1 = timed(first()).0;
        let t2 = timed(second()).0;
        let (ta, tb) = if r % 2 == 0 { (t1, t2) } else { (t2, t1) };
        best_a = best_a.min(ta);
        best_b = best_b.min(tb);
    }
    (best_a, best_b)
}

/// Peak RSS in KiB of one run of `program args`, via GNU time.
fn peak_rss_kib(program: &Path, args: &[String]) -> Option<u64> {
    let o = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(program)
        .args(args)
        .output()
        .ok()?;
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()
}

fn main() {
    let runs = env_u64("LVMSYNC_BENCH_RUNS", 5);
    if std::env::var_os("LVMSYNC_BENCH_KERNEL_ONLY").is_none() {
        restored_table(runs);
    }
    kernel_table(runs);
}

/// The table on `thin_restore`d metadata (no shared subtrees).
fn restored_table(runs: u64) {
    let mapped = env_u64("LVMSYNC_BENCH_MAPPED", 1_000_000);
    let dir = tempfile::Builder::new()
        .prefix("lvmsync-thin-bench")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let meta = dir.path().join("pool.meta");

    // Old device: runs of 1..=4096 blocks with holes of 0..=8 between them.
    let mut rng = Rng(0x5eed);
    let mut old = Vec::with_capacity(mapped as usize);
    let (mut v, mut data) = (0u64, 0u64);
    while (old.len() as u64) < mapped {
        let run = (1 + rng.next() % 4096).min(mapped - old.len() as u64);
        for i in 0..run {
            old.push((v + i, data + i, 0u32));
        }
        v += run + rng.next() % 9;
        data += run;
    }
    let mut devices = vec![Device {
        id: 1,
        maps: old.clone(),
    }];
    for (per_10k, id) in CASES {
        let mut maps = old.clone();
        for m in maps.iter_mut() {
            if rng.next() % 10_000 < per_10k {
                data += 1;
                *m = (m.0, data, 1);
            }
        }
        devices.push(Device { id, maps });
    }
    let meta_bytes = (devices.len() as u64 * mapped / 100 + 8192) * 4096;
    let t = Instant::now();
    restore(dir.path(), &meta, &devices, 2, meta_bytes);
    println!(
        "thin_restore: {} devices x {mapped} mapped blocks in {:.1?} (metadata in {})",
        devices.len(),
        t.elapsed(),
        dir.path().display()
    );
    print_header();
    for (per_10k, id) in CASES {
        compare_row(&meta, &format!("{:.1}%", per_10k as f64 / 100.0), id, runs);
    }
}

/// The kernel-made metadata cached by the guest generator (docs/performance.md): device 1 the
/// base, 3/4/5 after 0.1/1/10% clustered rewrites, 6/7/8 after 0.1/1/10% scattered ones.
fn kernel_table(runs: u64) {
    let path = std::env::var_os("LVMSYNC_BENCH_KERNEL_META")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/lvmsync/bench/thin-kernel-1M.meta")
        });
    if !path.exists() {
        println!(
            "\nno kernel-made metadata at {} (set LVMSYNC_BENCH_KERNEL_META, or generate it: \
             docs/performance.md); kernel-made table skipped",
            path.display()
        );
        return;
    }
    // In /dev/shm, like the restored table, so neither tool waits on the disk.
    let dir = tempfile::Builder::new()
        .prefix("lvmsync-thin-kbench")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let meta = dir.path().join("kernel.meta");
    let copied = Command::new("cp")
        .arg("--sparse=always")
        .arg(&path)
        .arg(&meta)
        .status()
        .unwrap();
    assert!(copied.success(), "cp {}", path.display());
    let src = FileSource::open(&meta).unwrap();
    let sb = Superblock::read(&src, 0).unwrap();
    let (base, base_walk) = diff_devices(&src, &sb, None, 1).unwrap();
    println!(
        "\nkernel-made metadata {}: device 1 maps {} blocks ({} nodes in a full walk)",
        path.display(),
        base.changed_bytes().0 / sb.data_block_bytes().0,
        base_walk.nodes_read
    );
    print_header();
    for (what, id) in [
        ("0.1% clustered", 3),
        ("1% clustered", 4),
        ("10% clustered", 5),
        ("0.1% scattered", 6),
        ("1% scattered", 7),
        ("10% scattered", 8),
    ] {
        compare_row(&meta, what, id, runs);
    }
}

fn print_header() {
    println!(
        "\n| changed | extents | thin_delta | lvmsync | speed-up | nodes read | nodes of two full walks | lvmsync peak RSS | thin_delta peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
}

/// One table row: device 1 against device `id` of `meta`, both tools side by side.
fn compare_row(meta: &Path, what: &str, id: u64, runs: u64) {
    let bin = lvmsync_bin();
    let args: Vec<String> = [
        "diff",
        "--json",
        "--snap1",
        "1",
        "--snap2",
        &id.to_string(),
        "--thin-metadata",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([meta.display().to_string()])
    .collect();
    let delta_args: Vec<String> = ["--snap1", "1", "--snap2", &id.to_string()]
        .iter()
        .map(|s| s.to_string())
        .chain([meta.display().to_string()])
        .collect();
    let ours: lvmsync::ChangeSet = serde_json::from_slice(&timed(command(bin, &args)).1)
        .expect("diff --json prints a change set");
    assert_eq!(
        ours,
        thin_delta(meta, 1, id),
        "results differ for device {id}"
    );
    let (t_l, t_d) = best_interleaved(
        runs,
        || command(bin, &args),
        || command(Path::new("thin_delta"), &delta_args),
    );
    let src = FileSource::open(meta).unwrap();
    let sb = Superblock::read(&src, 0).unwrap();
    let (_, stats) = diff_devices(&src, &sb, Some(1), id).unwrap();
    let full: u64 = [1, id]
        .iter()
        .map(|d| diff_devices(&src, &sb, None, *d).unwrap().1.nodes_read)
        .sum();
    let rss = |p: &Path, a: &[String]| {
        peak_rss_kib(p, a).map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
    };
    println!(
        "| {what} | {} | {:.1} ms | {:.1} ms | {:.1}x | {} | {full} | {} | {} |",
        ours.len(),
        t_d.as_secs_f64() * 1e3,
        t_l.as_secs_f64() * 1e3,
        t_d.as_secs_f64() / t_l.as_secs_f64(),
        stats.nodes_read,
        rss(bin, &args),
        rss(Path::new("/usr/sbin/thin_delta"), &delta_args),
    );
}

fn command(program: &Path, args: &[String]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}
