//! Side-by-side apply benchmark (run with `cargo bench --bench stream_apply`): the same
//! delta applied from a file with the undo journal (`apply`, which verifies the whole file
//! first) and without it (`--unsafe-no-journal`), piped into `receive` (verified once, as
//! over a network) with and without the journal, and copied with `cat delta > file && sync`;
//! reports medians, the journal's cost as ratios, and peak RSS.
//!
//! The delta rewrites a whole device (`LVMSYNC_BENCH_MIB`, default 1024): half random,
//! half compressible text. Destinations: one holding random data, so the journal must save
//! every old byte (its worst case), and one of zeroes (a sparse file: a first sync into a
//! fresh device). Variants run interleaved, `LVMSYNC_BENCH_ROUNDS` times (default 3);
//! `LVMSYNC_BENCH_BIN` names the lvmsync binary to time (default: the one cargo built).
//!
//! Each variant has its own state directory, kept from round to round (after an untimed
//! warm-up run), so a journaled apply reuses the spare journal the previous apply left, as
//! every apply after a destination's first does. One more variant times a destination's
//! first journaled apply: its state directory is removed before each run (untimed).

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn write_images(dir: &Path, mib: u64) -> (PathBuf, PathBuf) {
    use std::io::Write;
    let (src, old) = (dir.join("src.img"), dir.join("old.img"));
    let half = (mib << 20) / 2;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = |n: u64, f: &mut std::fs::File| {
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..n / (1 << 20) {
            bench_support::fill_random(&mut buf, &mut rng);
            f.write_all(&buf).unwrap();
        }
    };
    let mut s = std::fs::File::create(&src).unwrap();
    random(half, &mut s);
    let text: Vec<u8> = (0..)
        .flat_map(|i| format!("line {i:08} of compressible lvmsync benchmark text\n").into_bytes())
        .take(1 << 20)
        .collect();
    for _ in 0..half / (1 << 20) {
        s.write_all(&text).unwrap();
    }
    let mut o = std::fs::File::create(&old).unwrap();
    random(2 * half, &mut o);
    (src, old)
}

/// Run `cmd` after resetting the destination; returns (seconds, peak RSS KiB).
fn timed(cmd: &mut Command) -> (f64, u64) {
    let t = Instant::now();
    let out = cmd.output().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| {
            l.strip_prefix("MAXRSS_KB=")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    (secs, rss)
}

fn median(mut v: Vec<(f64, u64)>) -> (f64, u64) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v[v.len() / 2]
}

/// One measured variant: its label, command, destination image, state directory (and
/// whether it starts empty each run), and its times.
struct Variant {
    label: &'static str,
    cmd: Command,
    from: Option<PathBuf>,
    state: PathBuf,
    fresh_state: bool,
    runs: Vec<(f64, u64)>,
}

impl Variant {
    /// Reset the destination (and the state directory if it starts empty), then run.
    fn run(&mut self, dest: &Path, cat_out: &Path) -> (f64, u64) {
        let _ = std::fs::remove_file(dest);
        let _ = std::fs::remove_file(cat_out);
        if self.fresh_state {
            let _ = std::fs::remove_dir_all(&self.state);
        }
        if let Some(from) = &self.from {
            // A sparse copy keeps the zero destination's holes.
            let cp = Command::new("cp")
                .arg("--sparse=always")
                .arg(from)
                .arg(dest)
                .status()
                .unwrap();
            assert!(cp.success());
        }
        Command::new("sync").status().unwrap();
        timed(&mut self.cmd)
    }
}

fn main() {
    let (mib, rounds) = bench_support::mib_and_rounds();
    let dir = tempfile::tempdir().unwrap();
    // A copy of the binary (`LVMSYNC_BENCH_BIN`) is safe from rebuilds during a long run.
    let bin_path = std::env::var("LVMSYNC_BENCH_BIN");
    let bin = bin_path.as_deref().unwrap_or(env!("CARGO_BIN_EXE_lvmsync"));
    let (src, old) = write_images(dir.path(), mib);
    let zero = dir.path().join("zero.img");
    std::fs::File::create(&zero)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let delta = dir.path().join("full.lvd");
    let dest = dir.path().join("dest.img");
    let send = Command::new(bin)
        .args(["send", "--progress", "none", "--to"])
        .arg(&delta)
        .arg(&src)
        .output()
        .unwrap();
    assert!(send.status.success());
    let time_fmt = "MAXRSS_KB=%M";
    let state = |i: usize| dir.path().join(format!("st{i}"));
    let apply = |st: &Path, extra: &[&str]| {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", time_fmt, bin, "apply", "--progress", "none"])
            .arg("--state-dir")
            .arg(st)
            .arg(&delta)
            .arg(&dest)
            .args(extra);
        c
    };
    let receive = |st: &Path, extra: &str| {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", time_fmt, "sh", "-c"]).arg(format!(
            "'{bin}' receive --progress none {extra} --state-dir '{}' '{}' < '{}'",
            st.display(),
            dest.display(),
            delta.display()
        ));
        c
    };
    let mut cat = Command::new("/usr/bin/time");
    let cat_out = dir.path().join("cat.out");
    cat.args(["-f", time_fmt, "sh", "-c"]).arg(format!(
        "cat '{}' > '{}' && sync '{}'",
        delta.display(),
        cat_out.display(),
        cat_out.display()
    ));
    let nj = "--unsafe-no-journal";
    let v = |label, cmd, from: &PathBuf, i| Variant {
        label,
        cmd,
        from: Some(from.clone()),
        state: state(i),
        fresh_state: false,
        runs: Vec::new(),
    };
    let mut variants = vec![
        v(
            "apply, random dest (journaled)",
            apply(&state(0), &[]),
            &old,
            0,
        ),
        v(
            "apply, random dest --unsafe-no-journal",
            apply(&state(1), &[nj]),
            &old,
            1,
        ),
        v(
            "receive < delta, random dest (journaled)",
            receive(&state(2), ""),
            &old,
            2,
        ),
        v(
            "receive < delta, random dest --unsafe-no-journal",
            receive(&state(3), nj),
            &old,
            3,
        ),
        v(
            "apply, zero dest (journaled)",
            apply(&state(4), &[]),
            &zero,
            4,
        ),
        v(
            "apply, zero dest --unsafe-no-journal",
            apply(&state(5), &[nj]),
            &zero,
            5,
        ),
        Variant {
            label: "cat delta > file && sync",
            cmd: cat,
            from: None,
            state: state(6),
            fresh_state: true,
            runs: Vec::new(),
        },
        Variant {
            fresh_state: true,
            ..v(
                "apply, random dest (journaled, first apply)",
                apply(&state(7), &[]),
                &old,
                7,
            )
        },
    ];
    // Untimed: leave the spare journal a previous apply would have left.
    for var in variants.iter_mut().filter(|v| !v.fresh_state) {
        var.run(&dest, &cat_out);
    }
    for _ in 0..rounds {
        for var in &mut variants {
            let r = var.run(&dest, &cat_out);
            var.runs.push(r);
        }
    }
    let stream = std::fs::metadata(&delta).unwrap().len();
    println!("stream_apply: device {mib} MiB, stream {stream} bytes (median of {rounds})");
    let med: Vec<(f64, u64)> = variants.iter().map(|v| median(v.runs.clone())).collect();
    for (var, (secs, rss)) in variants.iter().zip(&med) {
        let all: Vec<String> = var.runs.iter().map(|r| format!("{:.2}", r.0)).collect();
        println!(
            "  {:50} {secs:6.2} s  peak RSS {rss:6} KiB  runs {}",
            var.label,
            all.join(" ")
        );
    }
    for (what, j, n) in [
        ("apply, random dest", 0, 1),
        ("receive, random dest", 2, 3),
        ("apply, zero dest", 4, 5),
        ("first apply, random dest", 7, 1),
    ] {
        println!(
            "  journal cost, {what:22} (journaled / no journal): {:.2}x",
            med[j].0 / med[n].0
        );
    }
    println!(
        "  apply vs cat (cat / journaled apply, random dest):  {:.2}x",
        med[6].0 / med[0].0
    );
}
