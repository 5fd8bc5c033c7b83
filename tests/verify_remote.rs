//! `lvmsync verify` against remote destinations, with the real binary on both ends: a listening
//! `lvmsync receive` over tcp://, tls:// and quic:// on 127.0.0.1, and ssh:// through a
//! throwaway sshd on loopback running `lvmsync verify --serve-hashes` there. Each finds exactly
//! the ranges changed in the destination (first and short last block included), `--repair`
//! makes the destination byte-equal, and a second verify finds 0 ranges. Refusals (unknown
//! name, no client certificate, a missing remote device) are clear errors with their exit code.

mod loop_support;
mod ssh_support;
mod stream_util;
mod transport_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use stream_util::*;
use transport_support::{listen_args, spawn_listening, Pki};

const BS: usize = 16384;

/// A source, and a destination equal to it but for the first block, two adjacent blocks in the
/// middle, one more, and the last (short) block. Returns the differing ranges they must list.
fn pair(d: &tempfile::TempDir) -> (PathBuf, PathBuf, Vec<(u64, u64)>) {
    let size = (3 << 20) + 5000;
    let img = make_image(size, 31);
    let mut old = img.clone();
    for at in [0, BS * 40 + 7, BS * 41 + 100, BS * 100, size - 1] {
        old[at] ^= 0x5a;
    }
    let (src, dest) = (at(d, "src.img"), at(d, "dest.img"));
    write(&src, &img);
    write(&dest, &old);
    let want = ranges(&diff_blocks(&old, &img, BS));
    assert_eq!(want.len(), 4, "{want:?}");
    assert_eq!(want[0].0, 0);
    assert_eq!(want[3].0 + want[3].1, size as u64);
    (src, dest, want)
}

fn ranges(cs: &lvmsync::ChangeSet) -> Vec<(u64, u64)> {
    cs.extents()
        .iter()
        .map(|e| (e.offset.0, e.length.0))
        .collect()
}

/// The `<offset> <length>` lines verify printed.
fn listed(o: &Output) -> Vec<(u64, u64)> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut f = l.split(' ').map(|x| x.parse().unwrap());
            (f.next().unwrap(), f.next().unwrap())
        })
        .collect()
}

fn verify(src: &Path, dest: &str, extra: &[String]) -> Output {
    bin()
        .args(["verify", "--progress", "none", "--block-size"])
        .arg(BS.to_string())
        .arg(src)
        .arg(dest)
        .args(extra)
        .output()
        .unwrap()
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

/// List, repair, list again: the whole acceptance sequence against one destination URL.
fn list_repair_relist(src: &Path, dest: &Path, url: &str, extra: &[String], want: &[(u64, u64)]) {
    let o = verify(src, url, extra);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), Some(4), "{url}: {err}");
    assert!(err.contains("run `lvmsync verify --repair`"), "{err}");
    assert_eq!(listed(&o), want, "{url}");
    assert_ne!(file_hash(dest), file_hash(src), "listing wrote nothing");
    let mut repair = extra.to_vec();
    repair.push("--repair".into());
    let dry = verify(
        src,
        url,
        &[repair.clone(), vec!["--dry-run".into()]].concat(),
    );
    ok(&dry);
    assert_eq!(listed(&dry), want, "{url}");
    assert_ne!(file_hash(dest), file_hash(src), "--dry-run wrote nothing");
    let o = verify(src, url, &repair);
    ok(&o);
    assert_eq!(file_hash(dest), file_hash(src), "{url}: repaired copy");
    let o = verify(src, url, extra);
    ok(&o);
    assert!(listed(&o).is_empty());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("# 0 differing ranges"));
}

/// A listening receiver serving `copy=<dest>` until dropped.
struct Receiver {
    child: Child,
    addr: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listen(scheme: &str, dest: &Path, st: &Path, pki: &Pki) -> Receiver {
    let mut cmd = bin();
    cmd.args(["receive", "--progress", "none"]);
    let allow = format!("copy={}", dest.display());
    let (child, addr, mut err) = spawn_listening(listen_args(&mut cmd, scheme, &allow, st, pki));
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::stderr()));
    Receiver { child, addr }
}

/// Client certificate flags for `who` ("" = none).
fn client_args(pki: &Pki, who: &str) -> Vec<String> {
    let mut v = vec!["--ca".to_string(), pki.path("ca.pem").display().to_string()];
    if !who.is_empty() {
        for (flag, ext) in [("--cert", "pem"), ("--key", "key")] {
            v.push(flag.into());
            v.push(pki.path(&format!("{who}.{ext}")).display().to_string());
        }
    }
    v
}

fn over_network(scheme: &str) {
    let pki = Pki::new();
    let d = tmp();
    let (src, dest, want) = pair(&d);
    let rx = listen(scheme, &dest, &at(&d, "st"), &pki);
    let extra = if scheme == "tcp" {
        Vec::new()
    } else {
        client_args(&pki, "client")
    };
    let url = format!("{scheme}://{}/copy", rx.addr);
    list_repair_relist(&src, &dest, &url, &extra, &want);
}

#[test]
fn tcp_lists_repairs_and_relists() {
    over_network("tcp");
}

#[test]
fn tls_lists_repairs_and_relists() {
    over_network("tls");
}

#[test]
fn quic_lists_repairs_and_relists() {
    over_network("quic");
}

#[test]
fn ssh_lists_repairs_and_relists() {
    let Some(sshd) = ssh_support::start_sshd() else {
        return;
    };
    let d = tmp();
    let (src, dest, want) = pair(&d);
    let st = format!("--state-dir={}", at(&d, "st").display());
    let lvmsync = PathBuf::from(env!("CARGO_BIN_EXE_lvmsync"));
    let extra = sshd.cli_args(&lvmsync, &[&st]);
    list_repair_relist(&src, &dest, &sshd.url(&dest), &extra, &want);
    // A destination that does not exist over there: the far side's own error, exit 4.
    let missing = verify(&src, &sshd.url(&at(&d, "nope.img")), &extra);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(code(&missing), Some(4), "{err}");
    assert!(err.contains("nope.img"), "{err}");
}

#[test]
fn refusals_are_transport_errors_and_touch_nothing() {
    let pki = Pki::new();
    let d = tmp();
    let (src, dest, _) = pair(&d);
    let before = file_hash(&dest);
    let rx = listen("tls", &dest, &at(&d, "st"), &pki);
    let cases = [
        ("other", "client", "no destination named \"other\" here"),
        ("copy", "", "pass --cert and --key"),
    ];
    for (name, who, says) in cases {
        let url = format!("tls://{}/{name}", rx.addr);
        let mut args = client_args(&pki, who);
        args.push("--repair".into());
        let o = verify(&src, &url, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), Some(6), "{name}/{who:?}: {err}");
        assert!(err.contains(says), "{name}/{who:?}: {err}");
        assert!(o.stdout.is_empty(), "nothing listed when refused");
    }
    assert_eq!(file_hash(&dest), before);
}

/// A source, and a destination that holds its first MiB only (a too-small copy).
fn short_pair(d: &tempfile::TempDir) -> (PathBuf, PathBuf) {
    let img = make_image(3 << 20, 77);
    let (src, dest) = (at(d, "src.img"), at(d, "short.img"));
    write(&src, &img);
    write(&dest, &img[..1 << 20]);
    (src, dest)
}

/// A repair the far side refuses exits with the code its apply failed with there (as a
/// refused `send` does: docs/transport.md), says why once, and leaves the copy as it was.
fn assert_refused_repair(
    src: &Path,
    dest: &Path,
    url: &str,
    extra: &[String],
    why: &str,
    want: i32,
) {
    let before = file_hash(dest);
    let mut args = extra.to_vec();
    args.push("--repair".into());
    let o = verify(src, url, &args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), Some(want), "{url}: {err}");
    assert_eq!(err.matches(why).count(), 1, "{url}: {err}");
    assert_eq!(file_hash(dest), before, "{url}: the refused repair wrote");
}

/// Over tcp://, tls:// and quic://: a destination too small for the source (the receiver has
/// no --grow) refuses the repair, exit 4; a receiver whose --state-dir can't be made (under a
/// regular file) fails the apply with an I/O error, exit 1. Both were exit 6 (transport).
#[test]
fn network_repair_refusals_exit_with_the_receivers_code() {
    let pki = Pki::new();
    for scheme in ["tcp", "tls", "quic"] {
        let d = tmp();
        let (src, dest) = short_pair(&d);
        let extra = if scheme == "tcp" {
            Vec::new()
        } else {
            client_args(&pki, "client")
        };
        let rx = listen(scheme, &dest, &at(&d, "st"), &pki);
        let url = format!("{scheme}://{}/copy", rx.addr);
        assert_refused_repair(&src, &dest, &url, &extra, "is 1048576 bytes", 4);
        drop(rx);
        let file = at(&d, "a-file");
        write(&file, b"not a directory");
        let rx = listen(scheme, &dest, &file.join("st"), &pki);
        let url = format!("{scheme}://{}/copy", rx.addr);
        assert_refused_repair(&src, &dest, &url, &extra, "Not a directory", 1);
    }
}

/// The same over ssh://, where the far side's `verify --serve-hashes` exited 4 for any failed
/// repair: now with its apply's own code (1 for the unusable state directory).
#[test]
fn ssh_repair_refusals_exit_with_the_remote_code() {
    let Some(sshd) = ssh_support::start_sshd() else {
        return;
    };
    let d = tmp();
    let (src, dest) = short_pair(&d);
    let lvmsync = PathBuf::from(env!("CARGO_BIN_EXE_lvmsync"));
    let st = format!("--state-dir={}", at(&d, "st").display());
    let extra = sshd.cli_args(&lvmsync, &[&st]);
    assert_refused_repair(&src, &dest, &sshd.url(&dest), &extra, "is 1048576 bytes", 4);
    let file = at(&d, "a-file");
    write(&file, b"not a directory");
    let st = format!("--state-dir={}", file.join("st").display());
    let extra = sshd.cli_args(&lvmsync, &[&st]);
    assert_refused_repair(&src, &dest, &sshd.url(&dest), &extra, "Not a directory", 1);
}

/// A busy destination (a loop device another program holds open exclusively, as a mount or
/// LVM does) refuses the repair: exit 4, as a local `verify --repair` and a refused `send`.
/// Without --repair it is only read, and listed. Needs root and loop devices.
#[test]
fn busy_remote_destination_refuses_the_repair_with_exit_4() {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(lo) = loop_support::LoopDevice::new(4) else {
        return;
    };
    let _holder = std::fs::File::options()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_EXCL)
        .open(&lo.path)
        .unwrap();
    let pki = Pki::new();
    let d = tmp();
    let src = at(&d, "src.img");
    write(&src, &make_image(4 << 20, 78));
    let rx = listen("tcp", &lo.path, &at(&d, "st"), &pki);
    let url = format!("tcp://{}/copy", rx.addr);
    let listed = verify(&src, &url, &[]);
    assert_eq!(
        code(&listed),
        Some(4),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stderr).contains("run `lvmsync verify --repair`"));
    assert_refused_repair(&src, &lo.path, &url, &[], "is mounted or in use", 4);
}

/// A remote destination that does not exist: the far side can't answer about it, exit 4 (the
/// destination class), without --repair as with it, over tcp:// as over ssh:// above.
#[test]
fn missing_network_destination_exits_4() {
    let pki = Pki::new();
    let d = tmp();
    let src = at(&d, "src.img");
    write(&src, &make_image(1 << 20, 79));
    let missing = at(&d, "nope.img");
    let rx = listen("tcp", &missing, &at(&d, "st"), &pki);
    let url = format!("tcp://{}/copy", rx.addr);
    for extra in [vec![], vec!["--repair".to_string()]] {
        let o = verify(&src, &url, &extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), Some(4), "{extra:?}: {err}");
        assert_eq!(
            err.matches("nope.img: No such file").count(),
            1,
            "{extra:?}: {err}"
        );
        assert!(!missing.exists(), "nothing created");
    }
}

/// A repair refused at its header while the verifier is still writing it (a 48 MiB stream of
/// random bytes, more than the sockets buffer): the verifier's write fails, and it reads the
/// far side's reply for the reason and its class (exit 4), not the broken pipe (exit 6).
#[test]
fn repair_refused_mid_write_exits_with_the_receivers_code() {
    let pki = Pki::new();
    let d = tmp();
    let mut img = vec![0u8; 48 << 20];
    Rng(80).fill(&mut img);
    let (src, dest) = (at(&d, "src.img"), at(&d, "short.img"));
    write(&src, &img);
    write(&dest, &img[..1 << 20]);
    let rx = listen("tcp", &dest, &at(&d, "st"), &pki);
    let url = format!("tcp://{}/copy", rx.addr);
    assert_refused_repair(&src, &dest, &url, &[], "is 1048576 bytes", 4);
}
