//! Shared helpers for the transport tests: a throwaway PKI made with rcgen, deterministic test
//! bytes, a receiving server thread that hashes what it gets, and the start of a listening
//! `lvmsync receive` process (its arguments, and the address it announces on stderr).
#![allow(dead_code)]

use lvmsync::transport::{Allow, ListenUrl, Listener, ServerOptions, TlsFiles, Verdict};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::thread::JoinHandle;

/// A CA and the server/client certificates it signed, as PEM files in a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn make_ca(cn: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

fn leaf(ca: &Ca, dir: &Path, stem: &str, server: bool) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, stem);
    if server {
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.subject_alt_names
            .push(SanType::IpAddress("::1".parse().unwrap()));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
}

impl Pki {
    /// ca.pem signs server.pem and client.pem; rogue-ca.pem signs rogue.pem (a client).
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca("lvmsync test CA");
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        leaf(&ca, dir.path(), "server", true);
        leaf(&ca, dir.path(), "client", false);
        let rogue = make_ca("some other CA");
        std::fs::write(dir.path().join("rogue-ca.pem"), rogue.cert.pem()).unwrap();
        leaf(&rogue, dir.path(), "rogue", false);
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The server's files: its cert/key and the CA its clients must be signed by.
    pub fn server(&self) -> TlsFiles {
        TlsFiles {
            cert: Some(self.path("server.pem")),
            key: Some(self.path("server.key")),
            ca: Some(self.path("ca.pem")),
        }
    }

    /// A client's files: `who` is "client", "rogue" or "" (no certificate).
    pub fn client(&self, who: &str) -> TlsFiles {
        let (cert, key) = if who.is_empty() {
            (None, None)
        } else {
            (
                Some(self.path(&format!("{who}.pem"))),
                Some(self.path(&format!("{who}.key"))),
            )
        };
        TlsFiles {
            cert,
            key,
            ca: Some(self.path("ca.pem")),
        }
    }
}

/// `len` deterministic pseudo-random bytes (blake3 XOF of `seed`).
pub fn test_bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// What a test receiver saw.
#[derive(Debug)]
pub struct Received {
    pub name: String,
    pub device: PathBuf,
    pub hash: blake3::Hash,
    pub len: u64,
}

/// Read everything from `r`, returning its blake3 and length.
pub fn hash_all(mut r: impl Read) -> std::io::Result<(blake3::Hash, u64)> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((h.finalize(), len));
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
}

/// Bind `url` with the test PKI and allow-list `vm1=/dev/test-vm1`.
pub fn bind(url: &str, pki: &Pki) -> Listener {
    let url: ListenUrl = url.parse().unwrap();
    let opts = ServerOptions {
        tls: pki.server(),
        allow: vec!["vm1=/dev/test-vm1".parse::<Allow>().unwrap()],
    };
    Listener::bind(&url, &opts).unwrap()
}

/// Accept one client on a thread: hash its stream, ack checkpoint "checkpoint 7", answer
/// `verdict`. The thread's result is the accept/read outcome, as the receiver saw it.
pub fn serve_one(
    listener: Listener,
    verdict: Verdict,
) -> (SocketAddr, JoinHandle<lvmsync::Result<Received>>) {
    let addr = listener.local_addr();
    let h = std::thread::spawn(move || {
        let s = listener.accept()?;
        let (hash, len) = hash_all(s.data).map_err(|e| lvmsync::Error::io("<stream>", e))?;
        let mut acks = s.acks;
        acks.checkpoint(b"checkpoint 7")?;
        acks.finish(verdict)?;
        Ok(Received {
            name: s.name,
            device: s.device,
            hash,
            len,
        })
    });
    (addr, h)
}

/// Format `addr` for a URL (bracketing IPv6).
pub fn hostport(addr: SocketAddr) -> String {
    addr.to_string()
}

/// Append `--listen <scheme>://127.0.0.1:0 --allow <allow> --state-dir <state_dir>` to a
/// prepared `lvmsync receive` command and, for every scheme but tcp, the server certificate,
/// key and client CA from `pki`.
pub fn listen_args<'a>(
    cmd: &'a mut Command,
    scheme: &str,
    allow: &str,
    state_dir: &Path,
    pki: &Pki,
) -> &'a mut Command {
    cmd.arg("--listen")
        .arg(format!("{scheme}://127.0.0.1:0"))
        .arg("--allow")
        .arg(allow)
        .arg("--state-dir")
        .arg(state_dir);
    if scheme != "tcp" {
        cmd.arg("--cert")
            .arg(pki.path("server.pem"))
            .arg("--key")
            .arg(pki.path("server.key"))
            .arg("--client-ca")
            .arg(pki.path("ca.pem"));
    }
    cmd
}

/// Spawn a prepared `lvmsync receive --listen` command with its stderr piped and wait for its
/// `lvmsync: listening on <addr>` line. Returns the child, that `host:port`, and the rest of
/// its stderr, which the caller must drain (or the receiver may block writing to it).
pub fn spawn_listening(cmd: &mut Command) -> (Child, String, BufReader<ChildStderr>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("lvmsync: listening on ")
        .unwrap_or_else(|| panic!("unexpected receiver output {line:?}"))
        .to_string();
    (child, addr, err)
}
