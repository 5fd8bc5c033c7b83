//! A throwaway sshd for the ssh:// tests: a real `sshd` on a loopback port with its own host key,
//! user key and config in a temp dir (not the system's sshd config), reached with the system
//! ssh client. Needs openssh-server and openssh-client (scripts/install-deps.sh); without them
//! [`start_sshd`] says so and returns `None`, and the test does nothing.
#![allow(dead_code)]

use lvmsync::transport::{ConnectOptions, SshOptions};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd; killed on drop. `dir` holds its keys and config (and is a scratch dir).
pub struct Sshd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
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

/// Start an sshd on a free loopback port that accepts the key `dir/id`.
pub fn start_sshd() -> Option<Sshd> {
    if !Path::new(SSHD).exists() || Command::new("ssh").arg("-V").output().is_err() {
        eprintln!("SKIP: {SSHD} or ssh missing (apt-get install openssh-server openssh-client)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("id"));
    std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
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
    /// ssh client arguments: no user config, no host key checks, quiet.
    fn ssh_args() -> Vec<String> {
        [
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
        .to_vec()
    }

    /// Library options reaching this sshd and running `remote_lvmsync [remote_args] ...` there.
    pub fn options(&self, remote_lvmsync: &Path, remote_args: &[&str]) -> ConnectOptions {
        ConnectOptions {
            ssh: SshOptions {
                identity: Some(self.dir.path().join("id")),
                extra_args: Self::ssh_args(),
                remote_lvmsync: remote_lvmsync.display().to_string(),
                remote_args: remote_args.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The same as `lvmsync` command-line flags (`--ssh-identity`, `--ssh-arg`, ...).
    pub fn cli_args(&self, remote_lvmsync: &Path, remote_args: &[&str]) -> Vec<String> {
        let mut v = vec![
            "--ssh-identity".to_string(),
            self.dir.path().join("id").display().to_string(),
            "--remote-lvmsync".to_string(),
            remote_lvmsync.display().to_string(),
        ];
        v.extend(
            Self::ssh_args()
                .into_iter()
                .map(|a| format!("--ssh-arg={a}")),
        );
        v.extend(remote_args.iter().map(|a| format!("--remote-arg={a}")));
        v
    }

    /// `ssh://<current user>@127.0.0.1:<port><path>`.
    pub fn url(&self, path: &Path) -> String {
        let out = Command::new("id").arg("-un").output().unwrap();
        let user = String::from_utf8(out.stdout).unwrap().trim().to_string();
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, path.display())
    }
}
