//! ssh:// end to end: a real sshd on a loopback port with a throwaway host key and user key in a
//! temp dir (not the system's sshd config), the system ssh client, and a tiny stand-in for the
//! remote `lvmsync receive <path>` that stores its stdin at <path>. Needs openssh-server and
//! openssh-client (scripts/install-deps.sh); without them the tests say so and do nothing.

mod transport_support;

use lvmsync::transport::{connect, ConnectOptions, Dest, SshOptions};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use transport_support::test_bytes;

const SSHD: &str = "/usr/sbin/sshd";

/// The stand-in remote command: `fake-lvmsync receive [args] <path>`.
const FAKE_LVMSYNC: &str = r#"#!/bin/sh
[ "$1" = receive ] || { echo "expected 'receive', got '$1'" >&2; exit 2; }
shift
for last; do :; done
case "$last" in
  */fail) cat >/dev/null; echo "lvmsync: error: $last: base mismatch; run a full sync" >&2; exit 6;;
esac
exec cat > "$last"
"#;

struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen failed");
}

fn start_sshd() -> Option<Sshd> {
    if !Path::new(SSHD).exists() || Command::new("ssh").arg("-V").output().is_err() {
        eprintln!("SKIP: {SSHD} or ssh missing (apt-get install openssh-server openssh-client)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("id"));
    std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
    let fake = d.join("fake-lvmsync");
    std::fs::write(&fake, FAKE_LVMSYNC).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // sshd refuses to start without its privilege-separation directory.
    if let Err(e) = std::fs::create_dir_all("/run/sshd") {
        eprintln!("SKIP: cannot create /run/sshd for sshd: {e}");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
         PermitRootLogin prohibit-password\n",
        d = d.display()
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    let child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sshd did not come up on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Sshd { child, dir, port })
}

impl Sshd {
    fn options(&self) -> ConnectOptions {
        let d = self.dir.path();
        ConnectOptions {
            ssh: SshOptions {
                identity: Some(d.join("id")),
                extra_args: [
                    "-F",
                    "/dev/null",
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "LogLevel=ERROR",
                ]
                .map(String::from)
                .to_vec(),
                remote_lvmsync: d.join("fake-lvmsync").display().to_string(),
                remote_args: vec!["--force".into()],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn url(&self, path: &Path) -> Dest {
        let out = Command::new("id").arg("-un").output().unwrap();
        let user = String::from_utf8(out.stdout).unwrap().trim().to_string();
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, path.display())
            .parse()
            .unwrap()
    }
}

#[test]
fn bytes_arrive_intact_even_with_awkward_path() {
    let Some(sshd) = start_sshd() else { return };
    let out: PathBuf = sshd.dir.path().join("dest image's copy.img");
    let data = test_bytes("ssh", 4 << 20);
    let mut conn = connect(&sshd.url(&out), &sshd.options()).unwrap();
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
    let mut conn = connect(&sshd.url(Path::new("/srv/fail")), &sshd.options()).unwrap();
    conn.write_all(&test_bytes("f", 1 << 20)).unwrap();
    let err = conn.finish().unwrap_err().to_string();
    assert!(err.contains("exited with status 6"), "{err}");
    assert!(
        err.contains("/srv/fail: base mismatch; run a full sync"),
        "{err}"
    );
    assert!(err.starts_with("ssh://"), "names the destination: {err}");
}

#[test]
fn ssh_failure_is_told_apart() {
    let Some(sshd) = start_sshd() else { return };
    let mut opts = sshd.options();
    opts.ssh.identity = Some(sshd.dir.path().join("host_key")); // not an authorised key
    let mut conn = connect(&sshd.url(Path::new("/srv/x")), &opts).unwrap();
    let _ = conn.write_all(&test_bytes("g", 1 << 20));
    let err = conn.finish().unwrap_err().to_string();
    assert!(err.contains("ssh itself failed (exit 255"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
}
