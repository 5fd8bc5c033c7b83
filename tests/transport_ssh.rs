//! ssh:// end to end: a real sshd on a loopback port with a throwaway host key and user key in a
//! temp dir (tests/ssh_support), the system ssh client, and a tiny stand-in for the
//! remote `lvmsync receive <path>` that stores its stdin at <path>. Needs openssh-server and
//! openssh-client (scripts/install-deps.sh); without them the tests say so and do nothing.

mod ssh_support;
mod transport_support;

use lvmsync::transport::{connect, ConnectOptions, Dest};
use lvmsync::ErrorClass;
use ssh_support::{start_sshd, Sshd};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use transport_support::test_bytes;

/// The stand-in remote command: `fake-lvmsync receive [args] <path>`.
const FAKE_LVMSYNC: &str = r#"#!/bin/sh
[ "$1" = receive ] || { echo "expected 'receive', got '$1'" >&2; exit 2; }
shift
for last; do :; done
case "$last" in
  */fail) cat >/dev/null; echo "lvmsync: $last: applying the stream from stdin" >&2
          echo "lvmsync: error: $last: base mismatch; run a full sync" >&2; exit 7;;
  */absent) cat >/dev/null; echo "sh: 1: lvmsync: not found" >&2; exit 127;;
  */wrapped) cat >/dev/null; echo "sudo: a password is required" >&2; exit 1;;
esac
exec cat > "$last"
"#;

/// Write the stand-in into the sshd's dir; returns its path.
fn fake_lvmsync(sshd: &Sshd) -> PathBuf {
    let fake = sshd.dir.path().join("fake-lvmsync");
    std::fs::write(&fake, FAKE_LVMSYNC).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

fn options(sshd: &Sshd) -> ConnectOptions {
    sshd.options(&fake_lvmsync(sshd), &["--force"])
}

fn url(sshd: &Sshd, path: &Path) -> Dest {
    sshd.url(path).parse().unwrap()
}

#[test]
fn bytes_arrive_intact_even_with_awkward_path() {
    let Some(sshd) = start_sshd() else { return };
    let out: PathBuf = sshd.dir.path().join("dest image's copy.img");
    let data = test_bytes("ssh", 4 << 20);
    let mut conn = connect(&url(&sshd, &out), &options(&sshd)).unwrap();
    for chunk in data.chunks(100_000) {
        conn.write_all(chunk).unwrap();
    }
    conn.finish().unwrap();
    let got = std::fs::read(&out).unwrap();
    assert_eq!(blake3::hash(&got), blake3::hash(&data));
}

#[test]
fn remote_failure_is_reported_with_its_stderr() {
    let Some(sshd) = start_sshd() else { return };
    let mut conn = connect(&url(&sshd, Path::new("/srv/fail")), &options(&sshd)).unwrap();
    conn.write_all(&test_bytes("f", 1 << 20)).unwrap();
    let err = conn.finish().unwrap_err();
    // The remote lvmsync's exit code is the error's class: exit 7 here as there.
    assert_eq!(err.class(), ErrorClass::BaseMismatch, "{err}");
    let err = err.to_string();
    assert!(err.contains("exited with status 7"), "{err}");
    // Its error line is quoted (once, without its prefix); its other lines were relayed.
    assert!(
        err.ends_with("exited with status 7: /srv/fail: base mismatch; run a full sync"),
        "{err}"
    );
    assert!(err.starts_with("ssh://"), "names the destination: {err}");
}

/// A status lvmsync did not give: no lvmsync on the far side (127), or a wrapper such as
/// sudo failing with 1 before lvmsync ran (no `lvmsync: error:` line), is a transport error.
#[test]
fn a_remote_status_that_is_not_lvmsyncs_is_a_transport_error() {
    let Some(sshd) = start_sshd() else { return };
    for (path, said) in [
        ("/srv/absent", "lvmsync: not found"),
        ("/srv/wrapped", "sudo: a password is required"),
    ] {
        let mut conn = connect(&url(&sshd, Path::new(path)), &options(&sshd)).unwrap();
        let _ = conn.write_all(&test_bytes("a", 1 << 16));
        let err = conn.finish().unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transport, "{path}: {err}");
        assert!(err.to_string().contains(said), "{path}: {err}");
    }
}

#[test]
fn ssh_failure_is_told_apart() {
    let Some(sshd) = start_sshd() else { return };
    let mut opts = options(&sshd);
    opts.ssh.identity = Some(sshd.dir.path().join("host_key")); // not an authorised key
    let mut conn = connect(&url(&sshd, Path::new("/srv/x")), &opts).unwrap();
    let _ = conn.write_all(&test_bytes("g", 1 << 20));
    let err = conn.finish().unwrap_err().to_string();
    assert!(err.contains("ssh itself failed (exit 255"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
}
