//! Side-by-side benchmark of the COW exception-store reader and the block-hash compare.
//!
//! 1. Stores with 1,048,576 exceptions (4 KiB chunks, random origin chunks, dense enough for
//!    the bitmap path and sparse enough for the radix path, written by the test-side
//!    kernel-allocator writer as sparse files): `lvmsync::cow::changes_from_file`
//!    against a plain read of the same bytes (every metadata area, same offsets, same order,
//!    no parsing), with the page cache warm and cold, and, as root, through a read-only loop
//!    device (the `O_DIRECT` path a live `-cow` device takes). Prints speed ratios (target
//!    at least 0.8) and the parser's peak RSS, measured in a child process, minus the result
//!    list. The warm row also times the plain read through io_uring (batched, registered
//!    buffer and file) and prints the parse's ratio against that too.
//! 2. `lvmsync::blockhash::compare_files` against `cmp` on the same two files.
//!
//! Run: `cargo bench --bench cow_parse` (or build with `--no-run` and run the binary). With
//! `COW_BENCH_WARM_ONLY=1` in the environment only the two warm-page-cache rows run (seconds
//! instead of minutes, for comparing builds). With `COW_BENCH_PROFILE=<n>` each store is
//! only parsed `n` times with the page cache warm, nothing else (for `perf record`).

#[path = "../tests/cow_support/mod.rs"]
mod cow_support;

use cow_support::{shuffled_chunks, StoreSpec};
use lvmsync::units::Bytes;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const EXCEPTIONS: u64 = 1 << 20;
const CHUNK_SECTORS: u32 = 8;
const RUNS: usize = 5;
const CHILD_ENV: &str = "LVMSYNC_BENCH_RSS_CHILD";

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        return rss_child(Path::new(&path));
    }
    let dir = tempfile::Builder::new()
        .prefix("lvmsync-bench")
        .tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .unwrap();
    // Dense: random writes over a 64 GiB origin (chunks 16 apart), sorted through a bitmap.
    cow_bench(dir.path(), 16);
    // Sparse: chunks 4096 apart (a 16 TiB origin): too sparse for a bitmap, radix-sorted.
    cow_bench(dir.path(), 4096);
    if ["COW_BENCH_WARM_ONLY", "COW_BENCH_PROFILE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        return;
    }
    blockhash_bench(dir.path());
}

/// Wall time and the process's CPU time (all threads) of one run.
#[derive(Debug, Clone, Copy)]
struct Timing {
    wall: Duration,
    cpu: Duration,
}

/// CPU time (user + system) this process has spent, on all its threads, ended ones included:
/// the parser reads on threads of its own and builds its result on two.
fn process_cpu() -> Duration {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec `ts`, which outlives the call.
    let rc = unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Best of `RUNS` timings of `a` and of `b` (wall and CPU minimum each), interleaved
/// (a, b, b, a, ...) so that load from other processes on the machine hits both alike;
/// `before` runs untimed ahead of each.
fn race(before: impl FnMut(), mut a: impl FnMut(), mut b: impl FnMut()) -> (Timing, Timing) {
    let best = race_all(before, &mut [&mut a, &mut b]);
    (best[0], best[1])
}

/// Best of `RUNS` timings of each of `runs` (wall and CPU minimum each), interleaved, every
/// other round in reverse order; `before` runs untimed ahead of each.
fn race_all(mut before: impl FnMut(), runs: &mut [&mut dyn FnMut()]) -> Vec<Timing> {
    let max = Timing {
        wall: Duration::MAX,
        cpu: Duration::MAX,
    };
    let mut best = vec![max; runs.len()];
    for run in 0..RUNS {
        let mut order: Vec<usize> = (0..runs.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for i in order {
            before();
            let (t, c) = (Instant::now(), process_cpu());
            runs[i]();
            let (wall, cpu) = (t.elapsed(), process_cpu() - c);
            best[i] = Timing {
                wall: best[i].wall.min(wall),
                cpu: best[i].cpu.min(cpu),
            };
        }
    }
    best
}

fn drop_cache(path: &Path) {
    let f = File::open(path).unwrap();
    nix::fcntl::posix_fadvise(
        &f,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .unwrap();
}

/// The plain read: every metadata area of `spec`, in order, into one buffer; no parsing.
/// With `direct`, through `O_DIRECT` into an aligned buffer, as the reader does for devices.
fn read_areas(path: &Path, spec: &StoreSpec, areas: u64, direct: bool) -> u64 {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    if direct {
        opts.custom_flags(nix::libc::O_DIRECT);
    }
    let f = opts.open(path).unwrap();
    let cb = spec.chunk_bytes() as usize;
    let mut raw = vec![0u8; cb + 4096];
    let skew = raw.as_ptr().align_offset(4096);
    let buf = &mut raw[skew..skew + cb];
    let mut sum = 0u64;
    for k in 0..areas {
        f.read_exact_at(buf, spec.area_chunk(k) * cb as u64)
            .unwrap();
        sum = sum.wrapping_add(u64::from(buf[8]));
    }
    sum
}

/// The plain read through io_uring instead of `pread`: the same areas, offsets and read sizes
/// into one registered buffer per read in flight, `URING_BATCH` reads submitted per
/// `io_uring_enter`, the file registered. Only to show whether batching the reads would save
/// kernel time (it does not, see docs/performance.md); `None` where io_uring is unavailable.
fn read_areas_uring(path: &Path, spec: &StoreSpec, areas: u64) -> Option<u64> {
    use io_uring::{opcode, types, IoUring};
    use std::os::fd::AsRawFd;
    const URING_BATCH: usize = 64;
    let f = File::open(path).unwrap();
    let cb = spec.chunk_bytes() as usize;
    let mut ring = IoUring::new(URING_BATCH as u32).ok()?;
    let mut bufs = vec![0u8; cb * URING_BATCH];
    let iov = [nix::libc::iovec {
        iov_base: bufs.as_mut_ptr().cast(),
        iov_len: bufs.len(),
    }];
    // SAFETY: `bufs` is registered here and unregistered when `ring` is dropped, which
    // happens before `bufs` is dropped (declared after it, dropped first), and every read
    // into it is reaped below before the next batch reuses it.
    unsafe { ring.submitter().register_buffers(&iov) }.ok()?;
    ring.submitter().register_files(&[f.as_raw_fd()]).ok()?;
    let mut sum = 0u64;
    let offsets: Vec<u64> = (0..areas).map(|k| spec.area_chunk(k) * cb as u64).collect();
    for batch in offsets.chunks(URING_BATCH) {
        for (i, &offset) in batch.iter().enumerate() {
            let buf = bufs[i * cb..].as_mut_ptr();
            let read = opcode::ReadFixed::new(types::Fixed(0), buf, cb as u32, 0)
                .offset(offset)
                .build()
                .user_data(i as u64);
            // SAFETY: the read targets `cb` bytes of the registered buffer `bufs` (slot `i`,
            // inside it), which stays alive and untouched until its completion is reaped.
            unsafe { ring.submission().push(&read) }.unwrap();
        }
        ring.submit_and_wait(batch.len()).unwrap();
        let done: Vec<i32> = ring.completion().map(|c| c.result()).collect();
        assert!(done.len() == batch.len() && done.iter().all(|&n| n == cb as i32));
        sum += (0..batch.len())
            .map(|i| u64::from(bufs[i * cb + 8]))
            .sum::<u64>();
    }
    Some(sum)
}

fn parse(path: &Path) -> usize {
    lvmsync::cow::changes_from_file(path).unwrap().len()
}

fn ratio_line(what: &str, plain: Timing, parse: Timing, bytes: u64) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what:<24} plain read {:>6.1} ms ({:>5.0} MB/s, cpu {:>5.1} ms)  parse {:>6.1} ms \
         ({:>5.0} MB/s, cpu {:>5.1} ms)  speed ratio {:.2}",
        ms(plain.wall),
        bytes as f64 / plain.wall.as_secs_f64() / 1e6,
        ms(plain.cpu),
        ms(parse.wall),
        bytes as f64 / parse.wall.as_secs_f64() / 1e6,
        ms(parse.cpu),
        plain.wall.as_secs_f64() / parse.wall.as_secs_f64()
    );
}

/// Origin chunks `spread` apart, in shuffled commit order.
fn cow_bench(dir: &Path, spread: u64) {
    let spec = StoreSpec::new(CHUNK_SECTORS, shuffled_chunks(EXCEPTIONS, 2024, spread));
    let path = dir.join("snap-cow.img");
    spec.write_sparse(&path);
    let areas = EXCEPTIONS / spec.per_area() + 1;
    let meta_bytes = areas * spec.chunk_bytes();
    let (_, store_len) = spec.layout();
    println!(
        "COW store: {EXCEPTIONS} exceptions {spread} chunks apart, chunk {} B, {areas} metadata \
         areas = {} MiB of metadata in a {} MiB store",
        spec.chunk_bytes(),
        meta_bytes >> 20,
        store_len >> 20
    );
    assert_eq!(
        parse(&path) as u64,
        EXCEPTIONS,
        "no two chunks are adjacent"
    );
    if let Ok(n) = std::env::var("COW_BENCH_PROFILE") {
        let n: u32 = n.parse().expect("COW_BENCH_PROFILE=<number of parses>");
        (0..n).for_each(|_| assert_eq!(parse(&path) as u64, EXCEPTIONS));
        return;
    }

    let plain = || {
        read_areas(&path, &spec, areas, false);
    };
    let parsed = || {
        parse(&path);
    };
    if read_areas_uring(&path, &spec, areas).is_some() {
        let uring = || {
            read_areas_uring(&path, &spec, areas);
        };
        let t = race_all(
            || {},
            &mut [&mut { plain }, &mut { uring }, &mut { parsed }],
        );
        ratio_line("file, page cache warm", t[0], t[2], meta_bytes);
        ratio_line("  (io_uring plain read)", t[1], t[2], meta_bytes);
    } else {
        let (p, q) = race(|| {}, plain, parsed);
        ratio_line("file, page cache warm", p, q, meta_bytes);
        println!("  (io_uring plain read: io_uring unavailable here)");
    }
    if std::env::var_os("COW_BENCH_WARM_ONLY").is_some() {
        return;
    }
    let (p, q) = race(|| drop_cache(&path), plain, parsed);
    ratio_line("file, page cache cold", p, q, meta_bytes);

    match LoopDev::attach(&path) {
        Some(dev) => {
            let (p, q) = race(
                || drop_cache(&path),
                || {
                    read_areas(&dev.0, &spec, areas, true);
                },
                || {
                    parse(&dev.0);
                },
            );
            ratio_line("loop device, O_DIRECT", p, q, meta_bytes);
        }
        None => println!("loop device, O_DIRECT: skipped (needs root and losetup)"),
    }
    rss_report(&path, EXCEPTIONS);
}

/// A read-only loop device over a file, detached on drop.
struct LoopDev(PathBuf);

impl LoopDev {
    fn attach(file: &Path) -> Option<Self> {
        let out = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(file)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| LoopDev(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())))
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// In a fresh process: parse, then print peak RSS and the result list's size.
fn rss_child(path: &Path) {
    let before = vm_hwm_kib();
    let cs = lvmsync::cow::changes_from_file(path).unwrap();
    let list = cs.len() * std::mem::size_of::<lvmsync::Extent>();
    println!("{before} {} {list}", vm_hwm_kib());
}

fn rss_report(path: &Path, exceptions: u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (start, peak, list) = (v[0], v[1], v[2] / 1024);
    println!(
        "COW parse peak RSS: {:.1} MiB (process start {:.1} MiB, result list {:.1} MiB for \
         {exceptions} extents); peak minus result list {:.1} MiB (target < 64)",
        peak as f64 / 1024.0,
        start as f64 / 1024.0,
        list as f64 / 1024.0,
        (peak - list) as f64 / 1024.0
    );
}

fn blockhash_bench(dir: &Path) {
    const SIZE: usize = 512 << 20;
    let old = dir.join("old.img");
    let new = dir.join("new.img");
    let mut data = vec![0u8; SIZE];
    let mut s = 0x1234_5678_9abc_def1u64;
    for w in data.chunks_mut(8) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        w.copy_from_slice(&s.to_le_bytes());
    }
    std::fs::write(&old, &data).unwrap();
    std::fs::write(&new, &data).unwrap();
    drop(data);
    // Identical files: cmp must read both to the end (it stops at the first difference).
    let bs = Bytes(65536);
    let (Timing { wall: cmp, .. }, Timing { wall: hashed, .. }) = race(
        || {},
        || {
            let st = Command::new("cmp")
                .arg("-s")
                .arg(&old)
                .arg(&new)
                .status()
                .unwrap();
            assert!(st.success());
        },
        || {
            let cs = lvmsync::blockhash::compare_files(&old, &new, bs).unwrap();
            assert!(cs.is_empty());
        },
    );
    let bytes = 2 * SIZE as u64;
    let gbs = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e9;
    println!(
        "blockhash compare, 2 x {} MiB, block 64 KiB, page cache warm: cmp -s {:.0} ms \
         ({:.2} GB/s)  lvmsync {:.0} ms ({:.2} GB/s)  speed ratio {:.2}",
        SIZE >> 20,
        cmp.as_secs_f64() * 1e3,
        gbs(cmp),
        hashed.as_secs_f64() * 1e3,
        gbs(hashed),
        cmp.as_secs_f64() / hashed.as_secs_f64()
    );
}
