//! End-to-end network throughput (run with `cargo bench --bench transport_e2e`): the real
//! `lvmsync send --base old new --to <scheme>://127.0.0.1:P/bench` into a real
//! `lvmsync receive --listen ... --once` process that applies the stream into a fresh
//! (sparse, all-zero) destination file through its journal and fdatasyncs at commit, against
//! copies of the delta file the same send writes with `--to <file>`:
//!
//! - `cat delta > out` (GNU cat: copy_file_range, the bytes never leave the kernel),
//! - `cat delta > out && sync --data out` (the same copy made durable, as the receiver's is),
//! - `cat delta | cat > out` and its `&& sync --data out` twin (the bytes cross user space),
//! - `cat new.img > out && sync --data out`: the floor no receiver can beat, writing durably
//!   the 1 GiB of plain bytes the receiver must write (the delta is the compressed ~521 MiB),
//! - `send --to - | receive` (the whole pipeline without a network),
//! - tcp://, tls:// (mutual TLS) and quic:// (striped over several QUIC streams).
//!
//! The new image (`LVMSYNC_BENCH_MIB`, default 1024) is half random, half compressible text
//! over an all-zero old image, so the delta covers the whole device. Variants run interleaved,
//! `LVMSYNC_BENCH_ROUNDS` rounds (default 3; `LVMSYNC_BENCH_ONLY=tls,tcp` for a subset, the
//! `cat` rows always run); reports medians, the ratio of each row's throughput to each
//! baseline, and the peak RSS and CPU seconds (user + system) of each side in the median run
//! (`/usr/bin/time`). `LVMSYNC_BIN_B=<another lvmsync>` adds each lvmsync row run from that
//! build too (`tcp@B` right after `tcp`), so two builds compare interleaved under the same
//! load. Every lvmsync run is checked:
//! the destination's blake3 must equal the new image's.

#[path = "bench_support/mod.rs"]
mod bench_support;
#[path = "../tests/transport_support/mod.rs"]
mod transport_support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use transport_support::{listen_args, spawn_listening, Pki};

/// The lvmsync binary: `LVMSYNC_BIN` (a copy others' rebuilds cannot replace mid-run), else
/// the one cargo built.
fn bin() -> String {
    std::env::var("LVMSYNC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_lvmsync").to_string())
}
const TIME_FMT: &str = "MAXRSS_KB=%M,CPU=%U+%S";

/// Old image: `mib` MiB of zeros (sparse). New image: half random, half compressible text.
fn write_images(dir: &Path, mib: u64) -> (PathBuf, PathBuf) {
    let (old, new) = (dir.join("old.img"), dir.join("new.img"));
    std::fs::File::create(&old)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let mut f = std::fs::File::create(&new).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut xof = blake3::Hasher::new().update(b"e2e").finalize_xof();
    for _ in 0..mib / 2 {
        xof.fill(&mut buf);
        f.write_all(&buf).unwrap();
    }
    let text: Vec<u8> = (0..)
        .flat_map(|i| format!("line {i:08} of compressible lvmsync benchmark text\n").into_bytes())
        .take(1 << 20)
        .collect();
    for _ in mib / 2..mib {
        f.write_all(&text).unwrap();
    }
    (old, new)
}

fn file_hash(p: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(p).unwrap()).unwrap();
    h.finalize()
}

/// Peak RSS (KiB) and CPU seconds (user + system) of each `/usr/bin/time -f TIME_FMT` line
/// printed, in order.
fn time_lines(stderr: &str) -> Vec<(u64, f64)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("MAXRSS_KB="))
        .map(|v| {
            let (kib, cpu) = v.trim().split_once(",CPU=").unwrap();
            let (user, sys) = cpu.split_once('+').unwrap();
            let secs = |x: &str| x.parse::<f64>().unwrap();
            (kib.parse().unwrap(), secs(user) + secs(sys))
        })
        .collect()
}

/// One timed run: seconds, and peak RSS (KiB) and CPU seconds of each side.
#[derive(Clone, Copy)]
struct Run {
    secs: f64,
    send: (u64, f64),
    recv: (u64, f64),
}

/// Run a shell pipeline; `/usr/bin/time` lines on its stderr give the RSS of each side.
fn shell(script: &str) -> Run {
    let t = Instant::now();
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script}: {err}");
    let sides = time_lines(&err);
    Run {
        secs,
        send: sides.first().copied().unwrap_or_default(),
        recv: sides.get(1).copied().unwrap_or_default(),
    }
}

fn tls_args(pki: &Pki, server: bool) -> Vec<PathBuf> {
    let (cert, key) = if server {
        ("server.pem", "server.key")
    } else {
        ("client.pem", "client.key")
    };
    vec![pki.path(cert), pki.path(key), pki.path("ca.pem")]
}

/// `send --base old new --to scheme://...` into `receive --listen scheme://... --once`, both
/// run from the lvmsync binary `bin`.
fn network_run(
    bin: &str,
    scheme: &str,
    (old, new, dest): (&Path, &Path, &Path),
    st: &Path,
    pki: &Pki,
) -> Run {
    let mut rx = Command::new("/usr/bin/time");
    rx.args([
        "-f",
        TIME_FMT,
        bin,
        "receive",
        "--once",
        "--progress",
        "none",
    ]);
    let allow = format!("bench={}", dest.display());
    let (mut rx, addr, mut err) = spawn_listening(listen_args(&mut rx, scheme, &allow, st, pki));
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut tx = Command::new("/usr/bin/time");
    tx.args(["-f", TIME_FMT, bin, "send", "--progress", "none", "--base"])
        .arg(old)
        .arg(new)
        .arg("--to")
        .arg(format!("{scheme}://{addr}/bench"));
    if scheme != "tcp" {
        let f = tls_args(pki, false);
        tx.arg("--cert").arg(&f[0]).arg("--key").arg(&f[1]);
        tx.arg("--ca").arg(&f[2]);
    }
    let t = Instant::now();
    let out = tx.output().unwrap();
    let ok = rx.wait().unwrap().success();
    let secs = t.elapsed().as_secs_f64();
    let send_err = String::from_utf8_lossy(&out.stderr).into_owned();
    let recv_err = rest.join().unwrap();
    assert!(
        out.status.success() && ok,
        "{scheme}: {send_err}\n{recv_err}"
    );
    Run {
        secs,
        send: time_lines(&send_err)[0],
        recv: time_lines(&recv_err)[0],
    }
}

fn median(mut v: Vec<Run>) -> Run {
    v.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    v[v.len() / 2]
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` discovery
    }
    let (mib, rounds) = bench_support::mib_and_rounds();
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = write_images(dir.path(), mib);
    let pki = Pki::new();
    let (delta, dest, out, st) = (
        dir.path().join("delta.lvd"),
        dir.path().join("dest.img"),
        dir.path().join("cat.out"),
        dir.path().join("state"),
    );
    let made = Command::new(bin())
        .args(["send", "--progress", "none", "--base"])
        .arg(&old)
        .arg(&new)
        .arg("--to")
        .arg(&delta)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let want = file_hash(&new);
    let (d, o) = (delta.display(), out.display());
    let (s, t) = (st.display(), dest.display());
    let timed = |tool: &str| format!("/usr/bin/time -f {TIME_FMT} {tool}");
    let all = [
        "cat",
        "cat+sync",
        "cat|cat",
        "cat|cat+sync",
        "cat new+sync",
        "pipe",
        "tcp",
        "tls",
        "quic",
    ];
    let only = std::env::var("LVMSYNC_BENCH_ONLY").unwrap_or_default();
    // A second build to compare, each of its rows right after the same row of the first.
    let bin_b = std::env::var("LVMSYNC_BIN_B").ok();
    let names: Vec<String> = all
        .into_iter()
        .filter(|n| only.is_empty() || n.starts_with("cat") || only.split(',').any(|o| o == *n))
        .flat_map(|n| {
            let b = (bin_b.is_some() && !n.starts_with("cat")).then(|| format!("{n}@B"));
            std::iter::once(n.to_string()).chain(b)
        })
        .collect();
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); names.len()];
    let load_before = load();
    for _ in 0..rounds.max(1) {
        for (i, name) in names.iter().enumerate() {
            // Fresh destination and state for every run, and nothing dirty left from the last.
            for p in [&out, &dest] {
                let _ = std::fs::remove_file(p);
            }
            let _ = std::fs::remove_dir_all(&st);
            std::fs::File::create(&dest)
                .unwrap()
                .set_len(mib << 20)
                .unwrap();
            Command::new("sync").status().unwrap();
            let (row, lvmsync) = match name.split_once('@') {
                Some((row, _)) => (row, bin_b.clone().expect("B rows only with LVMSYNC_BIN_B")),
                None => (name.as_str(), bin()),
            };
            let run = match row {
                "cat" => shell(&format!("{} '{d}' > '{o}'", timed("cat"))),
                "cat+sync" => shell(&format!(
                    "{} '{d}' > '{o}' && sync --data '{o}'",
                    timed("cat")
                )),
                "cat|cat" => shell(&format!(
                    "{} '{d}' | {} > '{o}'",
                    timed("cat"),
                    timed("cat")
                )),
                "cat|cat+sync" => shell(&format!(
                    "{} '{d}' | {} > '{o}' && sync --data '{o}'",
                    timed("cat"),
                    timed("cat")
                )),
                "cat new+sync" => shell(&format!(
                    "{} '{}' > '{o}' && sync --data '{o}'",
                    timed("cat"),
                    new.display()
                )),
                "pipe" => shell(&format!(
                    "{} send --progress none --base '{}' '{}' --to - | \
                     {} receive --progress none --state-dir '{s}' '{t}'",
                    timed(&lvmsync),
                    old.display(),
                    new.display(),
                    timed(&lvmsync)
                )),
                scheme => network_run(&lvmsync, scheme, (&old, &new, &dest), &st, &pki),
            };
            if name.starts_with("cat") {
                let copied = if *name == "cat new+sync" {
                    &new
                } else {
                    &delta
                };
                assert_eq!(
                    std::fs::metadata(&out).unwrap().len(),
                    copied.metadata().unwrap().len()
                );
            } else {
                assert_eq!(
                    file_hash(&dest),
                    want,
                    "{name} left a different destination"
                );
            }
            runs[i].push(run);
        }
    }
    let med: Vec<Run> = runs.into_iter().map(median).collect();
    let base = |n: &str| med[names.iter().position(|x| *x == n).unwrap()].secs;
    let bases =
        ["cat", "cat+sync", "cat|cat", "cat|cat+sync", "cat new+sync"].map(|n| (n, base(n)));
    let stream = delta.metadata().unwrap().len();
    println!(
        "transport e2e: {mib} MiB device, delta stream {:.1} MiB, median of {rounds}; \
         load before {} after {}",
        stream as f64 / (1 << 20) as f64,
        load_before.trim(),
        load().trim()
    );
    print!("  {:13} {:>8} {:>10}", "row", "median", "MiB/s");
    for (n, _) in &bases {
        print!(" {:>14}", format!("x {n}"));
    }
    println!("   peak RSS send / receive   CPU s send / receive");
    for (name, r) in names.iter().zip(&med) {
        print!(
            "  {name:13} {:7.3}s {:10.1}",
            r.secs,
            stream as f64 / (1 << 20) as f64 / r.secs
        );
        for (_, b) in &bases {
            print!(" {:14.2}", b / r.secs);
        }
        println!(
            "   {} / {} MiB   {:.2} / {:.2}",
            r.send.0.div_ceil(1024),
            r.recv.0.div_ceil(1024),
            r.send.1,
            r.recv.1
        );
    }
}
