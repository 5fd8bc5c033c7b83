//! Side-by-side transport throughput (run with `cargo bench --bench transport_throughput`):
//! the same file (`LVMSYNC_BENCH_MIB`, default 1024; half random, half compressible text)
//! copied with `cat file > out` and `cat file | cat > out`, over a bare loopback TCP socket
//! (the ceiling), and carried over tcp://, tls:// and quic:// on loopback into
//! an output file by the real transport code (sender and receiver threads in one process).
//! Runs are interleaved (cat, cat|cat, raw-tcp, tcp, tls, quic, cat, ...), 5 rounds
//! (`LVMSYNC_BENCH_ROUNDS`); reports the best and the median of each, and ratios of the bests. Page cache warm; no fsync on
//! either side, so the comparison is of the pipes, not of the disk.

#[path = "../tests/transport_support/mod.rs"]
mod transport_support;

use lvmsync::transport::{
    connect, Allow, ConnectOptions, Dest, ListenUrl, Listener, ServerOptions, TlsFiles,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const BUF: usize = 1 << 20;

fn write_input(path: &Path, mib: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let half = mib / 2;
    let mut buf = vec![0u8; BUF];
    let mut xof = blake3::Hasher::new().update(b"bench").finalize_xof();
    for _ in 0..half {
        xof.fill(&mut buf);
        f.write_all(&buf).unwrap();
    }
    let text: Vec<u8> = (0..)
        .flat_map(|i| format!("line {i:08} of compressible lvmsync benchmark text\n").into_bytes())
        .take(BUF)
        .collect();
    for _ in half..mib {
        f.write_all(&text).unwrap();
    }
}

fn copy(mut from: impl Read, to: &mut dyn Write) -> u64 {
    let mut buf = vec![0u8; BUF];
    let mut total = 0;
    loop {
        let n = from.read(&mut buf).unwrap();
        if n == 0 {
            return total;
        }
        to.write_all(&buf[..n]).unwrap();
        total += n as u64;
    }
}

/// Carry `input` to `output` over `scheme`; seconds from connect to the receiver's ack.
fn transport_run(
    scheme: &str,
    input: &Path,
    output: &Path,
    server: &TlsFiles,
    client: &TlsFiles,
) -> f64 {
    let url: ListenUrl = format!("{scheme}://127.0.0.1:0").parse().unwrap();
    let opts = ServerOptions {
        tls: server.clone(),
        allow: vec![format!("bench={}", output.display())
            .parse::<Allow>()
            .unwrap()],
    };
    let listener = Listener::bind(&url, &opts).unwrap();
    let addr = listener.local_addr();
    let rx = std::thread::spawn(move || {
        let mut s = listener.accept().unwrap();
        let mut out = std::fs::File::create(&s.device).unwrap();
        copy(&mut s.data, &mut out);
        s.acks.finish(Ok(())).unwrap();
    });
    let t = Instant::now();
    let dest: Dest = format!("{scheme}://{addr}/bench").parse().unwrap();
    let copts = ConnectOptions {
        tls: client.clone(),
        ..Default::default()
    };
    let mut conn = connect(&dest, &copts).unwrap();
    copy(std::fs::File::open(input).unwrap(), &mut conn);
    conn.finish().unwrap();
    let secs = t.elapsed().as_secs_f64();
    rx.join().unwrap();
    secs
}

/// `cat in > out` (GNU cat uses copy_file_range: the bytes never leave the kernel) or, with
/// `pipe`, `cat in | cat > out` (the bytes cross user space once, as through any transport).
fn cat_run(input: &Path, output: &Path, pipe: bool) -> f64 {
    let (i, o) = (input.display(), output.display());
    let script = if pipe {
        format!("cat '{i}' | cat > '{o}'")
    } else {
        format!("cat '{i}' > '{o}'")
    };
    let t = Instant::now();
    let ok = Command::new("sh")
        .arg("-c")
        .arg(script)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    t.elapsed().as_secs_f64()
}

/// The ceiling: the same copy over a bare loopback TCP socket, no framing, no TLS.
fn raw_tcp_run(input: &Path, output: &Path) -> f64 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let out = output.to_path_buf();
    let rx = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut f = std::fs::File::create(out).unwrap();
        copy(s, &mut f);
    });
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    copy(std::fs::File::open(input).unwrap(), &mut s);
    drop(s);
    rx.join().unwrap();
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` discovery
    }
    let mib: u64 = std::env::var("LVMSYNC_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir().unwrap();
    let input: PathBuf = dir.path().join("delta.bin");
    let output: PathBuf = dir.path().join("out.bin");
    write_input(&input, mib);
    let pki = transport_support::Pki::new();
    let (server, client) = (pki.server(), pki.client("client"));
    let expect = {
        let mut h = blake3::Hasher::new();
        h.update_reader(std::fs::File::open(&input).unwrap())
            .unwrap();
        h.finalize()
    };
    let all = ["cat", "cat|cat", "raw-tcp", "tcp", "tls", "quic"];
    // LVMSYNC_BENCH_ONLY=tls,tcp runs a subset (for profiling); `cat` always runs as the base.
    let only = std::env::var("LVMSYNC_BENCH_ONLY").unwrap_or_default();
    let names: Vec<&str> = all
        .into_iter()
        .filter(|n| only.is_empty() || *n == "cat" || only.split(',').any(|o| o == *n))
        .collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let rounds: usize = std::env::var("LVMSYNC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    for _round in 0..rounds.max(1) {
        for (i, name) in names.iter().enumerate() {
            let _ = std::fs::remove_file(&output);
            let secs = match *name {
                "cat" => cat_run(&input, &output, false),
                "cat|cat" => cat_run(&input, &output, true),
                "raw-tcp" => raw_tcp_run(&input, &output),
                scheme => transport_run(scheme, &input, &output, &server, &client),
            };
            let mut h = blake3::Hasher::new();
            h.update_reader(std::fs::File::open(&output).unwrap())
                .unwrap();
            assert_eq!(h.finalize(), expect, "{name} delivered different bytes");
            times[i].push(secs);
        }
    }
    let best = |t: &[f64]| t.iter().copied().fold(f64::INFINITY, f64::min);
    let base = best(&times[0]);
    let pipe = names
        .iter()
        .position(|n| *n == "cat|cat")
        .map(|i| best(&times[i]));
    println!("transport throughput, {mib} MiB, best and median of {rounds}, loopback:");
    for (name, t) in names.iter().zip(&times) {
        let (b, m) = (best(t), median(t.clone()));
        let vs_pipe = pipe
            .map(|p| format!("  {:5.2}x cat|cat", p / b))
            .unwrap_or_default();
        println!(
            "  {name:7} best {b:7.3} s {:8.1} MiB/s (median {m:7.3} s)  {:5.2}x cat{vs_pipe}",
            mib as f64 / b,
            base / b
        );
    }
}
