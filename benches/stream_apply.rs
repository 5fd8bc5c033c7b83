//! Side-by-side apply benchmark (run with `cargo bench --bench stream_apply`):
//! the same delta applied from a file with the undo journal (`apply`, which verifies the
//! whole file first), without it (`--unsafe-no-journal`), piped into `receive` (journaled,
//! verified once, as over a network), and copied with `cat delta > file && sync`; reports
//! medians, ratios and peak RSS.
//!
//! The delta rewrites a whole device (`LVMSYNC_BENCH_MIB`, default 1024): half random,
//! half compressible text, over a destination holding random data, so the journal must save
//! every old byte (its worst case).

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
            for c in buf.chunks_mut(8) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                c.copy_from_slice(&rng.to_le_bytes());
            }
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

fn main() {
    let mib: u64 = std::env::var("LVMSYNC_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_lvmsync");
    let (src, old) = write_images(dir.path(), mib);
    let delta = dir.path().join("full.lvd");
    let st = dir.path().join("st");
    let dest = dir.path().join("dest.img");
    let send = Command::new(bin)
        .args(["send", "--progress", "none", "--to"])
        .arg(&delta)
        .arg(&src)
        .output()
        .unwrap();
    assert!(send.status.success());
    let time_fmt = "MAXRSS_KB=%M";
    let apply = |extra: &[&str]| {
        let mut c = Command::new("/usr/bin/time");
        c.args([
            "-f",
            time_fmt,
            bin,
            "apply",
            "--progress",
            "none",
            "--state-dir",
        ])
        .arg(&st)
        .arg(&delta)
        .arg(&dest)
        .args(extra);
        c
    };
    let mut cat = Command::new("/usr/bin/time");
    cat.args(["-f", time_fmt, "sh", "-c"]).arg(format!(
        "cat '{}' > '{}' && sync '{}'",
        delta.display(),
        dir.path().join("cat.out").display(),
        dir.path().join("cat.out").display()
    ));
    let mut receive = Command::new("/usr/bin/time");
    receive.args(["-f", time_fmt, "sh", "-c"]).arg(format!(
        "'{bin}' receive --progress none --state-dir '{}' '{}' < '{}'",
        st.display(),
        dest.display(),
        delta.display()
    ));
    let reset = || {
        std::fs::copy(&old, &dest).unwrap();
        let _ = std::fs::remove_dir_all(&st);
        Command::new("sync").status().unwrap();
    };
    let (mut j, mut nj, mut r, mut c) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        reset();
        j.push(timed(&mut apply(&[])));
        reset();
        nj.push(timed(&mut apply(&["--unsafe-no-journal"])));
        reset();
        r.push(timed(&mut receive));
        reset();
        c.push(timed(&mut cat));
    }
    let (j, nj, r, c) = (median(j), median(nj), median(r), median(c));
    let stream = std::fs::metadata(&delta).unwrap().len();
    println!("stream_apply: device {mib} MiB, stream {stream} bytes (median of 3)");
    println!(
        "  apply (journaled)        {:7.2} s  peak RSS {} KiB",
        j.0, j.1
    );
    println!(
        "  apply --unsafe-no-journal{:7.2} s  peak RSS {} KiB",
        nj.0, nj.1
    );
    println!(
        "  receive < delta (journaled){:5.2} s  peak RSS {} KiB",
        r.0, r.1
    );
    println!("  cat delta > file && sync {:7.2} s", c.0);
    println!(
        "  journal cost (journaled / no journal): {:.2}x",
        j.0 / nj.0
    );
    println!("  apply vs cat (cat / journaled apply):  {:.2}x", c.0 / j.0);
    println!("  receive vs cat (cat / receive):        {:.2}x", c.0 / r.0);
}
