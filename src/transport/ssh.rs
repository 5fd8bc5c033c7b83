//! `ssh://[user@]host[:port]/<path>`: the system `ssh` runs `lvmsync receive <path>` on the far
//! side and its stdin is the byte pipe, as the Ruby lvmsync did. For `lvmsync verify` it runs
//! `lvmsync verify --serve-hashes <path>` instead and talks over its stdin and stdout. Authentication, host keys and
//! agent forwarding stay ssh's business. The remote command's exit status is the verdict, and
//! a remote lvmsync's exit code is kept as the error's class (so `send` exits as the remote
//! `receive` did). Its stderr is relayed as it comes, but for the remote lvmsync's error lines,
//! which are quoted in the error instead, so that the reason is said once.

use super::channel::Channel;
use super::conn::{Conn, Outcome};
use crate::{Error, ErrorClass, Result};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How to run ssh and the remote lvmsync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOptions {
    /// The ssh client to run (default `ssh`).
    pub program: PathBuf,
    /// `-i <identity>`.
    pub identity: Option<PathBuf>,
    /// Further ssh arguments passed through verbatim (`-o StrictHostKeyChecking=yes`, `-F cfg`).
    pub extra_args: Vec<String>,
    /// The lvmsync binary on the far side (default `lvmsync`).
    pub remote_lvmsync: String,
    /// Arguments for the remote `lvmsync receive` placed before the path (`--force`, ...).
    pub remote_args: Vec<String>,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            program: PathBuf::from("ssh"),
            identity: None,
            extra_args: Vec::new(),
            remote_lvmsync: "lvmsync".to_string(),
            remote_args: Vec::new(),
        }
    }
}

/// Quote one word for the remote POSIX shell, which is what ssh hands the command line to.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The ssh command line for `user@host:port` running `receive <path>` there.
pub fn command(
    user: Option<&str>,
    host: &str,
    port: Option<u16>,
    path: &str,
    opts: &SshOptions,
) -> Command {
    command_running(&["receive"], user, host, port, path, opts)
}

/// The destination as a URL again, for messages.
pub fn endpoint(user: Option<&str>, host: &str, port: Option<u16>, path: &str) -> String {
    let who = user.map(|u| format!("{u}@")).unwrap_or_default();
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    format!("ssh://{who}{host}{port}{path}")
}

/// The ssh command line running `<remote lvmsync> [remote args] <words> <path>` there (the
/// remote args go first so they also fit subcommands whose last flag takes the path).
pub fn command_running(
    words: &[&str],
    user: Option<&str>,
    host: &str,
    port: Option<u16>,
    path: &str,
    opts: &SshOptions,
) -> Command {
    let mut cmd = Command::new(&opts.program);
    cmd.arg("-o").arg("BatchMode=yes");
    if let Some(p) = port {
        cmd.arg("-p").arg(p.to_string());
    }
    if let Some(id) = &opts.identity {
        cmd.arg("-i").arg(id);
    }
    if let Some(u) = user {
        cmd.arg("-l").arg(u);
    }
    cmd.args(&opts.extra_args);
    let mut remote = vec![shell_quote(&opts.remote_lvmsync), words[0].to_string()];
    remote.extend(opts.remote_args.iter().map(|a| shell_quote(a)));
    remote.extend(words[1..].iter().map(|w| shell_quote(w)));
    remote.push(shell_quote(path));
    cmd.arg("--").arg(host).arg(remote.join(" "));
    cmd
}

/// The `tracing` target of the lines relayed from ssh's stderr (the remote lvmsync's messages
/// and ssh's own), one event per line with the destination as the `endpoint` field; a text
/// log format prints them as they came.
pub const REMOTE_STDERR_TARGET: &str = "lvmsync::remote";

/// Relay one line of the remote's stderr.
fn relay(endpoint: &str, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches(['\n', '\r']);
    tracing::info!(target: REMOTE_STDERR_TARGET, endpoint, "{line}");
}

/// Keep the last this-many bytes of the remote's stderr for the error message.
const STDERR_TAIL: usize = 4096;

/// How the remote lvmsync (text log format) starts the line of the error it exits with.
const REMOTE_ERROR: &str = "lvmsync: error: ";

/// What ssh's stderr said that the error message may quote.
#[derive(Default)]
struct Said {
    /// The remote lvmsync's error lines, prefix removed: not relayed, so that a failure says
    /// them once, in the error (at most [`STDERR_TAIL`] bytes, the newest kept).
    errors: Vec<String>,
    /// The last [`STDERR_TAIL`] bytes of everything, for a failure without such lines (ssh's
    /// own, a remote shell's "command not found").
    tail: Vec<u8>,
}

impl Said {
    /// Relay `line`, or hold it back if it is the remote lvmsync's error.
    fn line(&mut self, endpoint: &str, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        match text
            .trim_end_matches(['\n', '\r'])
            .strip_prefix(REMOTE_ERROR)
        {
            Some(error) => {
                self.errors.push(error.to_string());
                while self.errors.iter().map(String::len).sum::<usize>() > STDERR_TAIL {
                    self.errors.remove(0);
                }
            }
            None => relay(endpoint, line),
        }
    }

    /// Keep `bytes` in the tail.
    fn keep(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        let excess = self.tail.len().saturating_sub(STDERR_TAIL);
        self.tail.drain(..excess);
    }
}

/// A running `ssh ... lvmsync receive <path>` (or `verify --serve-hashes <path>`, whose
/// stdout is then read back).
pub struct SshConn {
    endpoint: String,
    child: Child,
    stdin: Option<io::BufWriter<ChildStdin>>,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<()>>,
    said: Arc<Mutex<Said>>,
}

impl SshConn {
    /// Start ssh; `endpoint` names the destination in messages.
    pub fn spawn(endpoint: String, cmd: Command) -> Result<Self> {
        Self::start(endpoint, cmd, Stdio::null())
    }

    /// Start ssh with its stdout readable too (the far side answers on it).
    pub fn spawn_duplex(endpoint: String, cmd: Command) -> Result<Self> {
        Self::start(endpoint, cmd, Stdio::piped())
    }

    fn start(endpoint: String, mut cmd: Command, stdout: Stdio) -> Result<Self> {
        cmd.stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Error::Transport {
            endpoint: endpoint.clone(),
            detail: format!(
                "cannot run {:?}: {e}; install openssh-client",
                cmd.get_program()
            ),
        })?;
        let stdin = child
            .stdin
            .take()
            .map(|s| io::BufWriter::with_capacity(1 << 20, s));
        let said = Arc::new(Mutex::new(Said::default()));
        let stderr = child.stderr.take().map(|mut err| {
            let said = said.clone();
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut line = Vec::new();
                let with = |f: &mut dyn FnMut(&mut Said)| {
                    if let Ok(mut s) = said.lock() {
                        f(&mut s);
                    }
                };
                while let Ok(n @ 1..) = err.read(&mut buf) {
                    for piece in buf[..n].split_inclusive(|&b| b == b'\n') {
                        line.extend_from_slice(piece);
                        if line.ends_with(b"\n") || line.len() >= 64 << 10 {
                            with(&mut |s| s.line(&endpoint, &line));
                            line.clear();
                        }
                    }
                    with(&mut |s| s.keep(&buf[..n]));
                }
                if !line.is_empty() {
                    with(&mut |s| s.line(&endpoint, &line));
                }
            })
        });
        Ok(SshConn {
            endpoint,
            stdout: child.stdout.take(),
            child,
            stdin,
            stderr,
            said,
        })
    }

    /// Close the pipe, wait for ssh, and describe a failure with the remote's own words.
    fn wait(&mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|e| Error::Transport {
            endpoint: self.endpoint.clone(),
            detail: format!("waiting for ssh: {e}"),
        })?;
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
        self.verdict(status)
    }

    fn verdict(&self, status: ExitStatus) -> Result<()> {
        // Cloned, not taken: a failed wait may be explained again (a channel closed after a
        // failed write); held lines are taken only on success, to be relayed once.
        let (errors, tail) = match self.said.lock() {
            Ok(mut s) if status.success() => (std::mem::take(&mut s.errors), Vec::new()),
            Ok(s) => (s.errors.clone(), s.tail.clone()),
            Err(_) => Default::default(),
        };
        if status.success() {
            // Error lines from a remote that succeeded after all: show them as they were.
            for e in errors {
                relay(&self.endpoint, format!("{REMOTE_ERROR}{e}").as_bytes());
            }
            return Ok(());
        }
        // The remote lvmsync's own error if it printed one (relayed lines are not repeated),
        // else the tail of whatever ssh printed.
        let said = if errors.is_empty() {
            String::from_utf8_lossy(&tail).trim().to_string()
        } else {
            errors.join("; ")
        };
        let who = match status.code() {
            Some(255) => "ssh itself failed (exit 255: check host, port, user and key)".to_string(),
            Some(c) => format!("the remote lvmsync exited with status {c}"),
            None => format!("ssh was killed ({status})"),
        };
        let detail = if said.is_empty() {
            who
        } else {
            format!("{who}: {said}")
        };
        // The remote lvmsync's documented exit code is its error's class: keep it, so a
        // refusal exits here as it did there (and as over tls://). Only when lvmsync itself
        // said why (an `lvmsync: error:` line): a wrapper (sudo, a ForceCommand, a login
        // shell) that fails with 1 or 2 is a transport failure, as are 255 (ssh's own) and
        // 126/127 (no lvmsync there).
        let class = status
            .code()
            .filter(|_| !errors.is_empty())
            .and_then(|c| u8::try_from(c).ok())
            .and_then(ErrorClass::from_code)
            .unwrap_or(ErrorClass::Transport);
        Err(Error::remote(class, &self.endpoint, detail))
    }

    fn pipe_error(&mut self, e: io::Error) -> io::Error {
        match self.wait() {
            // The remote's classified verdict, passed on whole by the stream writer.
            Err(why) => io::Error::new(e.kind(), why),
            Ok(()) => io::Error::new(e.kind(), format!("{}: {e}", self.endpoint)),
        }
    }
}

impl Write for SshConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = match self.stdin.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        };
        r.map_err(|e| self.pipe_error(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = match self.stdin.as_mut() {
            Some(w) => w.flush(),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        };
        r.map_err(|e| self.pipe_error(e))
    }
}

impl Conn for SshConn {
    fn acked_checkpoint(&self) -> Option<Vec<u8>> {
        None
    }

    fn finish(mut self: Box<Self>) -> Result<Outcome> {
        if let Some(w) = self.stdin.as_mut() {
            if let Err(e) = w.flush() {
                return Err(match self.wait() {
                    Err(why) => why,
                    Ok(()) => Error::Transport {
                        endpoint: self.endpoint.clone(),
                        detail: format!("writing to ssh: {e}"),
                    },
                });
            }
        }
        self.wait().map(|()| Outcome::default())
    }
}

impl Drop for SshConn {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            // Abandoned mid-stream: don't let the remote mistake a short stream for a whole one.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Read for SshConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stdout.as_mut() {
            Some(r) => r.read(buf),
            None => Ok(0),
        }
    }
}

impl Channel for SshConn {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn end_writes(&mut self) -> io::Result<()> {
        match self.stdin.take() {
            Some(mut w) => w.flush(),
            None => Ok(()),
        }
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        drop(self.stdout.take());
        self.wait()
    }
}
