//! A throwaway sshd for the ssh:// tests: a real `sshd` on a loopback port with its own host key,
//! user key and config in a temp dir (not the system's sshd config), reached with the system
//! ssh client. Needs openssh-server and openssh-client (scripts/install-deps.sh); without them
//! [`start_sshd`] says so and returns `None`, and the test does nothing.
#![allow(dead_code)]

use lvmsync::transport::{ConnectOptions, SshOptions};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
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
    // The free port is found by binding port 0 and closing it again, so another process can
    // take it before sshd binds it: then sshd exits (it can't bind), or something else answers
    // there. Either way, try another port; only an sshd's banner on the port counts as ready.
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if let Some(child) = spawn_sshd(d, port) {
            return Some(Sshd { child, dir, port });
        }
    }
    panic!("sshd did not come up on any of 5 ports (each attempt's log is printed above)");
}

/// Start sshd on `port` with a config in `d` and wait until it answers with its banner (no
/// fixed sleep: polled, with a deadline only a broken sshd reaches). `None` if sshd exited
/// or something else holds the port.
fn spawn_sshd(d: &Path, port: u16) -> Option<Child> {
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
         PermitRootLogin prohibit-password\n",
        d = d.display()
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    let log = std::fs::File::create(d.join("sshd.log")).unwrap();
    let mut child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
            eprintln!("sshd on port {port} exited ({status}): {log}");
            return None;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut banner = [0u8; 4];
            if s.read_exact(&mut banner).is_ok() && banner == *b"SSH-" {
                return Some(child);
            }
            eprintln!("port {port} answers, but not with an sshd banner: trying another");
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "sshd did not come up on port {port}: {}",
            std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
