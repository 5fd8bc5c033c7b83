//! Round trips through the network transports with the real binary on both ends:
//! `lvmsync receive --listen` and `lvmsync send --to tcp:// | tls:// | quic://`, a full sync
//! then an incremental delta each; the destination must equal the source after each step.
//! A sender that is cut off mid-stream leaves the destination unchanged.

mod stream_util;
mod transport_support;
use std::path::Path;
use std::process::{Child, Stdio};
use stream_util::*;
use transport_support::{listen_args, spawn_listening, Pki};

/// Start a one-shot listening receiver; returns it and its `host:port`.
fn listen(scheme: &str, dest: &Path, st: &Path, pki: &Pki) -> (Child, String) {
    listen_env(scheme, dest, st, pki, &[])
}

/// [`listen`] with crash-test hooks set on the receiver ([`TestHook`]).
fn listen_env(
    scheme: &str,
    dest: &Path,
    st: &Path,
    pki: &Pki,
    hooks: &[(&str, &str)],
) -> (Child, String) {
    let mut cmd = bin();
    for (var, value) in hooks {
        cmd.test_hook(var, value);
    }
    cmd.args(["receive", "--once", "--progress", "none"]);
    let allow = format!("copy={}", dest.display());
    let (child, addr, mut err) = spawn_listening(listen_args(&mut cmd, scheme, &allow, st, pki));
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, addr)
}

fn send(scheme: &str, addr: &str, pki: &Pki, args: &[&Path]) -> std::process::Output {
    let mut cmd = bin();
    cmd.args(["send", "--progress", "none", "--block-size", "16384"]);
    if args.len() == 2 {
        cmd.arg("--base").arg(args[0]);
    }
    cmd.arg(args[args.len() - 1])
        .arg("--to")
        .arg(format!("{scheme}://{addr}/copy"));
    if scheme != "tcp" {
        cmd.arg("--cert")
            .arg(pki.path("client.pem"))
            .arg("--key")
            .arg(pki.path("client.key"))
            .arg("--ca")
            .arg(pki.path("ca.pem"));
    }
    cmd.output().unwrap()
}

fn round_trips(scheme: &str) {
    let pki = Pki::new();
    let d = tmp();
    let (dest, st) = (at(&d, "dest.img"), at(&d, "st"));
    let mut img = make_image(4 << 20, 0x77);
    let v0 = at(&d, "v0.img");
    write(&v0, &img);
    mutate(&mut img, &mut Rng(8), 6);
    let v1 = at(&d, "v1.img");
    write(&v1, &img);
    for (step, args) in [vec![v0.as_path()], vec![v0.as_path(), v1.as_path()]]
        .iter()
        .enumerate()
    {
        let (mut rx, addr) = listen(scheme, &dest, &st, &pki);
        let out = send(scheme, &addr, &pki, args);
        ok(&out);
        assert!(rx.wait().unwrap().success(), "{scheme} receiver failed");
        let want = args[args.len() - 1];
        assert_eq!(file_hash(&dest), file_hash(want), "{scheme} step {step}");
    }
}

#[test]
fn tcp_round_trips() {
    round_trips("tcp");
}

#[test]
fn tls_round_trips() {
    round_trips("tls");
}

#[test]
fn quic_round_trips() {
    round_trips("quic");
}

#[test]
fn untrusted_client_is_refused_and_destination_untouched() {
    let pki = Pki::new();
    let d = tmp();
    let (dest, st) = (at(&d, "dest.img"), at(&d, "st"));
    write(&dest, &[5u8; 1 << 20]);
    let src = at(&d, "src.img");
    write(&src, &make_image(1 << 20, 3));
    let (mut rx, addr) = listen("tls", &dest, &st, &pki);
    let out = bin()
        .args(["send", "--progress", "none"])
        .arg(&src)
        .arg("--to")
        .arg(format!("tls://{addr}/copy"))
        .arg("--cert")
        .arg(pki.path("rogue.pem"))
        .arg("--key")
        .arg(pki.path("rogue.key"))
        .arg("--ca")
        .arg(pki.path("ca.pem"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!rx.wait().unwrap().success());
    assert_eq!(std::fs::read(&dest).unwrap(), vec![5u8; 1 << 20]);
}

#[test]
fn network_transfer_resumes_after_the_receiver_is_killed() {
    let pki = Pki::new();
    let d = tmp();
    let (dest, st) = (at(&d, "dest.img"), at(&d, "st"));
    let mut img = make_image(8 << 20, 0x1357);
    let v0 = at(&d, "v0.img");
    write(&v0, &img);
    let mut rng = Rng(0x2468);
    for _ in 0..80 {
        mutate(&mut img, &mut rng, 1);
    }
    let v1 = at(&d, "v1.img");
    write(&v1, &img);
    let full = at(&d, "full.lvd");
    send_delta(None, &v0, &full);
    ok(&apply(&full, &dest, &st, &[]));
    let sender = |addr: &str, resume: bool| {
        let mut cmd = bin();
        cmd.args(["send", "--progress", "none", "--block-size", "16384"])
            .args(["--checkpoint-every", "262144", "--base"])
            .arg(&v0)
            .arg(&v1)
            .arg("--to")
            .arg(format!("tcp://{addr}/copy"));
        if resume {
            cmd.arg("--resume");
        }
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // A slow receiver, killed once it has made a checkpoint durable.
    let slow = [("LVMSYNC_TEST_SLOW_MS", "5")];
    let (mut rx, addr) = listen_env("tcp", &dest, &st, &pki, &slow);
    let tx = sender(&addr, false);
    let paths = lvmsync::journal::DestPaths::new(&st, &dest).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while lvmsync::journal::resume::resume_point(&paths)
        .ok()
        .flatten()
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no durable checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    rx.kill().unwrap();
    rx.wait().unwrap();
    let first = tx.wait_with_output().unwrap();
    assert!(!first.status.success(), "the sender must notice the cut");
    // Reconnect: the receiver offers its checkpoint, the sender sends only the rest.
    let (mut rx, addr) = listen("tcp", &dest, &st, &pki);
    let second = sender(&addr, true).wait_with_output().unwrap();
    ok(&second);
    assert!(rx.wait().unwrap().success());
    assert_eq!(file_hash(&dest), file_hash(&v1));
    let sent = |o: &std::process::Output| -> u64 {
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        err.split("sent ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let full_delta = sent(&send_base(&v0, &v1, at(&d, "whole.lvd")));
    assert!(
        sent(&second) < full_delta,
        "resumed send re-sent everything"
    );
}

#[test]
fn a_receiver_refusing_a_large_stream_ends_the_sender_with_its_reason() {
    // The receiver refuses at the header (destination too small, as for a busy device) and
    // hangs up while the sender still has most of a stream larger than the socket buffers
    // to write: the sender must stop with the receiver's reason, not wait forever.
    let pki = Pki::new();
    let d = tmp();
    let (dest, st) = (at(&d, "dest.img"), at(&d, "st"));
    write(&dest, &[5u8; 1 << 20]);
    let src = at(&d, "src.img");
    let mut noise = vec![0u8; 32 << 20];
    Rng(11).fill(&mut noise);
    write(&src, &noise);
    let (mut rx, addr) = listen("tcp", &dest, &st, &pki);
    let mut tx = bin()
        .args(["send", "--progress", "none"])
        .arg(&src)
        .arg("--to")
        .arg(format!("tcp://{addr}/copy"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(s) = tx.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = tx.kill();
            panic!("the sender still runs 120 s after the receiver refused");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut tx.stderr.take().unwrap(), &mut err).unwrap();
    // Exit 4, as a local receive refusing it: the write error carries the receiver's class.
    assert_eq!(status.code(), Some(4), "{err}");
    assert!(err.contains("is 1048576 bytes"), "no reason in: {err}");
    // Said once, naming the destination once.
    assert_eq!(err.matches("is 1048576 bytes").count(), 1, "{err}");
    assert_eq!(err.matches("the receiver failed").count(), 1, "{err}");
    assert!(!rx.wait().unwrap().success());
    assert_eq!(std::fs::read(&dest).unwrap(), vec![5u8; 1 << 20]);
}
