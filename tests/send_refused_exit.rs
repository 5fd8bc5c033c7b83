//! A refused network send exits like the same refusal at a local receiver. The real binary on
//! both ends: the local reference is `lvmsync receive <dest> < delta`; the network sender is
//! `lvmsync send --to tcp:// | tls:// | quic://` to a listening `lvmsync receive`, and
//! `--to ssh://` through a throwaway sshd on loopback running the same binary. Refusals: a
//! delta for another base (exit 7), a destination too small for the stream (exit 4), and a
//! busy one, a loop device another program holds open exclusively (exit 4; needs root and
//! loop devices, skipped without). The sender must exit with the local code, say the
//! receiver's reason once, and leave the destination as it was.

mod loop_support;
mod ssh_support;
mod stream_util;
mod transport_support;

use loop_support::LoopDevice;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use stream_util::*;
use transport_support::{listen_args, spawn_listening, Pki};

/// One refusal: the destination's bytes and the `send` arguments the receiver refuses.
struct Case {
    dir: tempfile::TempDir,
    dest: PathBuf,
    state: PathBuf,
    /// `[--base old] new`.
    send: Vec<PathBuf>,
    /// What the reason says, in the receiver's words.
    reason: &'static str,
    /// A busy destination: its loop device and the exclusive handle that keeps it busy.
    _busy: Option<(LoopDevice, File)>,
}

/// The destination holds v0; the delta is v1 → v2: the receiver refuses its base.
fn base_mismatch() -> Case {
    let dir = tmp();
    let mut img = make_image(2 << 20, 41);
    let v0 = at(&dir, "v0.img");
    write(&v0, &img);
    let mut rng = Rng(5);
    mutate(&mut img, &mut rng, 4);
    let v1 = at(&dir, "v1.img");
    write(&v1, &img);
    mutate(&mut img, &mut rng, 4);
    let v2 = at(&dir, "v2.img");
    write(&v2, &img);
    let dest = at(&dir, "dest.img");
    std::fs::copy(&v0, &dest).unwrap();
    Case {
        state: at(&dir, "st"),
        send: vec![PathBuf::from("--base"), v1, v2],
        dest,
        dir,
        reason: "apply the missing deltas",
        _busy: None,
    }
}

/// A 4 MiB full sync into a 1 MiB destination file: the receiver refuses its size.
fn too_small() -> Case {
    let dir = tmp();
    let src = at(&dir, "src.img");
    write(&src, &make_image(4 << 20, 42));
    let dest = at(&dir, "dest.img");
    write(&dest, &[5u8; 1 << 20]);
    Case {
        state: at(&dir, "st"),
        send: vec![src],
        dest,
        dir,
        reason: "is 1048576 bytes",
        _busy: None,
    }
}

/// A full sync into a loop device another program holds open exclusively (as mount and LVM
/// do): the receiver refuses it as busy. `None` where loop devices can't be used (not root).
fn busy() -> Option<Case> {
    let lo = LoopDevice::new(4)?;
    let holder = File::options()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_EXCL)
        .open(&lo.path)
        .unwrap();
    let dir = tmp();
    let src = at(&dir, "src.img");
    write(&src, &make_image(4 << 20, 43));
    Some(Case {
        state: at(&dir, "st"),
        send: vec![src],
        dest: lo.path.clone(),
        dir,
        reason: "is mounted or in use",
        _busy: Some((lo, holder)),
    })
}

fn send(case: &Case, to: &str, extra: &[String]) -> Output {
    bin()
        .args(["send", "--progress", "none", "--block-size", "16384"])
        .args(&case.send)
        .arg("--to")
        .arg(to)
        .args(extra)
        .output()
        .unwrap()
}

/// The exit code of the same refusal at a local `lvmsync receive` fed from a delta file.
fn local_code(case: &Case) -> i32 {
    let delta = at(&case.dir, "delta.lvd");
    ok(&send(case, &delta.display().to_string(), &[]));
    let out = bin()
        .args(["receive", "--progress", "none", "--state-dir"])
        .arg(&case.state)
        .arg(&case.dest)
        .stdin(std::fs::File::open(&delta).unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(case.reason), "local: {err}");
    out.status.code().expect("an exit code")
}

/// The sender's outcome must be the local one: same code, the reason said once.
fn assert_like_local(case: &Case, what: &str, out: &Output, dest_before: &[u8]) {
    let code = local_code(case);
    assert!(code == 4 || code == 7, "local receive exited {code}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert_eq!(err.matches(case.reason).count(), 1, "{what}: {err}");
    assert_eq!(std::fs::read(&case.dest).unwrap(), dest_before, "{what}");
}

fn refused_over(scheme: &str, case: Case) {
    let pki = Pki::new();
    let before = std::fs::read(&case.dest).unwrap();
    let mut cmd = bin();
    cmd.args(["receive", "--once", "--progress", "none"]);
    let allow = format!("copy={}", case.dest.display());
    let (mut rx, addr, mut rx_err) =
        spawn_listening(listen_args(&mut cmd, scheme, &allow, &case.state, &pki));
    let drain = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut rx_err, &mut s).map(|_| s)
    });
    let mut tls = Vec::new();
    if scheme != "tcp" {
        for (flag, file) in [
            ("--cert", "client.pem"),
            ("--key", "client.key"),
            ("--ca", "ca.pem"),
        ] {
            tls.push(flag.to_string());
            tls.push(pki.path(file).display().to_string());
        }
    }
    let out = send(&case, &format!("{scheme}://{addr}/copy"), &tls);
    let rx_code = rx.wait().unwrap().code();
    let rx_err = drain.join().unwrap().unwrap();
    // The receiver failed with the code the sender must now have.
    assert_eq!(rx_code, out.status.code(), "receiver: {rx_err}");
    assert_like_local(&case, scheme, &out, &before);
}

#[test]
fn tls_base_mismatch_exits_like_a_local_receive() {
    refused_over("tls", base_mismatch());
}

#[test]
fn tls_too_small_destination_exits_like_a_local_receive() {
    refused_over("tls", too_small());
}

#[test]
fn tls_busy_destination_exits_like_a_local_receive() {
    if let Some(case) = busy() {
        refused_over("tls", case);
    }
}

#[test]
fn tcp_base_mismatch_exits_like_a_local_receive() {
    refused_over("tcp", base_mismatch());
}

#[test]
fn tcp_too_small_destination_exits_like_a_local_receive() {
    refused_over("tcp", too_small());
}

#[test]
fn quic_refusals_exit_like_a_local_receive() {
    refused_over("quic", base_mismatch());
    refused_over("quic", too_small());
}

/// Over ssh:// the remote `lvmsync receive`'s exit status is the verdict.
fn refused_over_ssh(case: Case) {
    let Some(sshd) = ssh_support::start_sshd() else {
        return;
    };
    let before = std::fs::read(&case.dest).unwrap();
    let lvmsync = Path::new(env!("CARGO_BIN_EXE_lvmsync"));
    let state = format!("--state-dir={}", case.state.display());
    let extra = sshd.cli_args(lvmsync, &[&state, "--progress=none"]);
    let out = send(&case, &sshd.url(&case.dest), &extra);
    assert_like_local(&case, "ssh", &out, &before);
}

#[test]
fn ssh_base_mismatch_exits_like_a_local_receive() {
    refused_over_ssh(base_mismatch());
}

#[test]
fn ssh_too_small_destination_exits_like_a_local_receive() {
    refused_over_ssh(too_small());
}

#[test]
fn ssh_busy_destination_exits_like_a_local_receive() {
    if let Some(case) = busy() {
        refused_over_ssh(case);
    }
}

/// A remote usage error (exit 2) is quoted as the remote said it: its stderr line says
/// "invalid argument" once, not once for this side and again in the remote's words. The far
/// side is the real binary, run by a wrapper as `lvmsync verify <path> -` (a real usage error:
/// "verify needs a destination to read") in place of `lvmsync receive <path>`.
#[test]
fn ssh_remote_usage_error_says_invalid_argument_once() {
    let Some(sshd) = ssh_support::start_sshd() else {
        return;
    };
    let case = too_small();
    let wrapper = at(&case.dir, "usage-lvmsync");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor last; do :; done\nexec '{}' verify \"$last\" -\n",
            env!("CARGO_BIN_EXE_lvmsync")
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let url = sshd.url(&case.dest);
    let out = send(&case, &url, &sshd.cli_args(&wrapper, &[]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("lvmsync: error: "))
        .unwrap_or_else(|| panic!("no error line in: {err}"));
    assert_eq!(
        line,
        format!(
            "lvmsync: error: {url}: the remote lvmsync exited with status 2: invalid argument: \
             verify needs a destination to read, not `-`"
        ),
        "{err}"
    );
}

/// A receiver whose apply fails with an I/O error (its --state-dir can't be made: it lies
/// under a regular file) makes `send` exit 1, as the local `receive` does, and the OS error is
/// said once (the receiver sent its error with every cause, repeating the OS error).
#[test]
fn tcp_receiver_io_error_exits_1_and_says_it_once() {
    let case = too_small();
    let file = at(&case.dir, "a-file");
    write(&file, b"not a directory");
    let state = file.join("st");
    let mut cmd = bin();
    cmd.args(["receive", "--once", "--progress", "none"]);
    let allow = format!("copy={}", case.dest.display());
    let (mut rx, addr, _rx_err) =
        spawn_listening(listen_args(&mut cmd, "tcp", &allow, &state, &Pki::new()));
    let out = send(&case, &format!("tcp://{addr}/copy"), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(rx.wait().unwrap().code(), Some(1));
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
}
