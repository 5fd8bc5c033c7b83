//! The sender's end of a transport: a `Write` for the byte stream, plus the receiver's answer.
//!
//! Whatever the destination (stdout, a file, ssh, tls://, quic://, tcp://), `lvmsync send`
//! writes its stream into a [`Conn`] and calls [`Conn::finish`], which returns only once the
//! receiver has confirmed the whole stream (or says why not).

use super::duplex::{Duplex, WriteHalf};
use super::frame::{read_control, Control};
use super::stripe::StripedWriter;
use super::verdict::{read_verdict, Verdict};
use crate::{Error, Result};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What the receiver confirmed at the end of a transfer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The last stream checkpoint (opaque bytes of the stream format) the receiver
    /// acknowledged as durable (network transports).
    pub last_checkpoint: Option<Vec<u8>>,
}

/// A byte pipe to a receiver.
pub trait Conn: Write + Send {
    /// The newest checkpoint the receiver has acknowledged so far (for `--resume` bookkeeping).
    fn acked_checkpoint(&self) -> Option<Vec<u8>>;

    /// The receiver's resume point for this destination, sent with its Accept: the checkpoint
    /// of an interrupted earlier transfer that `--resume` may continue from (network only).
    fn resume_point(&self) -> Option<&[u8]> {
        None
    }

    /// End the stream and wait for the receiver's verdict. An `Err` carries the receiver's own
    /// error text (or why the connection was lost) and names the destination.
    fn finish(self: Box<Self>) -> Result<Outcome>;
}

/// Capacity asked for a pipe on standard output (1 MiB, the default unprivileged limit of
/// `/proc/sys/fs/pipe-max-size`; the kernel's default is 64 KiB).
const PIPE_SIZE: i32 = 1 << 20;

/// `-` or a file: the stream is the delta itself, kept to apply later.
pub struct FileConn {
    out: BufWriter<Box<dyn Write + Send>>,
    file: Option<(PathBuf, File)>,
}

impl FileConn {
    /// Write to standard output: straight to file descriptor 1 (not through `io::stdout()`,
    /// whose line buffering splits writes at newline bytes), and when it is a pipe, widen the
    /// pipe to [`PIPE_SIZE`] so each `write` moves a whole buffer with fewer wake-ups.
    pub fn stdout() -> Self {
        use std::os::fd::AsFd;
        let out: Box<dyn Write + Send> = match io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => {
                // Best effort: a pipe keeps its size when this fails (e.g. over the limit).
                let widened = nix::fcntl::F_SETPIPE_SZ(PIPE_SIZE);
                let _ = nix::fcntl::fcntl(&fd, widened);
                Box::new(File::from(fd))
            }
            Err(_) => Box::new(io::stdout()),
        };
        FileConn {
            out: BufWriter::with_capacity(1 << 20, out),
            file: None,
        }
    }

    /// Create (or truncate) `path` and write the stream there; `finish` makes it durable.
    pub fn create(path: PathBuf) -> Result<Self> {
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let writer = file.try_clone().map_err(|e| Error::io(&path, e))?;
        Ok(FileConn {
            out: BufWriter::with_capacity(1 << 20, Box::new(writer)),
            file: Some((path, file)),
        })
    }
}

impl Write for FileConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Conn for FileConn {
    fn acked_checkpoint(&self) -> Option<Vec<u8>> {
        None
    }

    fn finish(mut self: Box<Self>) -> Result<Outcome> {
        let name = match &self.file {
            Some((p, _)) => p.clone(),
            None => PathBuf::from("<stdout>"),
        };
        self.out.flush().map_err(|e| Error::io(&name, e))?;
        if let Some((path, file)) = &self.file {
            match file.sync_all() {
                // A special file that cannot be synced (`--to /dev/null`): nothing to keep.
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {}
                r => r.map_err(|e| Error::io(path, e))?,
            }
        }
        Ok(Outcome::default())
    }
}

/// How long a failed write waits for the receiver's Status explaining it.
const STATUS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// State the acknowledgement reader shares with the writer.
#[derive(Default)]
struct Acks {
    last: Option<Vec<u8>>,
}

/// A framed network connection (tls://, quic://, tcp://) after the hello was accepted.
pub struct NetConn {
    endpoint: String,
    data: StripedWriter,
    acks: Arc<Mutex<Acks>>,
    answer: Option<JoinHandle<io::Result<Verdict>>>,
    resume: Option<Vec<u8>>,
    /// Kept alive for the connection's lifetime (QUIC endpoint and runtime); dropped last.
    _keep: Option<Box<dyn Send>>,
}

fn transport(endpoint: &str, detail: impl Into<String>) -> Error {
    Error::Transport {
        endpoint: endpoint.to_string(),
        detail: detail.into(),
    }
}

/// Send `hello` (a `Hello` or `Query`) on `duplex` and wait for the receiver's answer: its
/// Accept token (empty unless it offers a resume point), or an error naming `endpoint` and
/// why: refused, no answer, or a peer that does not speak lvmsync's transport protocol.
pub(crate) fn say_hello(endpoint: &str, duplex: &mut Duplex, hello: &Control) -> Result<Vec<u8>> {
    let lost = |e: io::Error| transport(endpoint, format!("no answer to our hello: {e}"));
    duplex.write.write_all(&hello.encode()).map_err(lost)?;
    duplex.write.flush().map_err(lost)?;
    match read_control(&mut duplex.read) {
        Ok(Control::Accept(token)) => Ok(token),
        Ok(Control::Refuse(why)) => Err(transport(endpoint, format!("refused: {why}"))),
        Ok(other) => Err(transport(
            endpoint,
            format!("unexpected {other:?} instead of an accept"),
        )),
        Err(e) if e.kind() == io::ErrorKind::InvalidData && !e.to_string().contains("TLS") => {
            Err(transport(
                endpoint,
                format!("the server did not answer in the lvmsync transport protocol ({e}); check the scheme and port"),
            ))
        }
        Err(e) => Err(lost(e)),
    }
}

impl NetConn {
    /// Say hello on `duplex`, wait for Accept, and start reading acknowledgements. The byte
    /// stream is striped over the main stream and the `lanes` (extra QUIC streams, each
    /// already announced by its `Lane` frame; none elsewhere).
    pub(crate) fn start(
        endpoint: String,
        mut duplex: Duplex,
        name: &str,
        lanes: Vec<Box<dyn WriteHalf>>,
        keep: Option<Box<dyn Send>>,
    ) -> Result<Self> {
        let hello = Control::Hello {
            name: name.to_string(),
            lanes: u16::try_from(lanes.len())
                .map_err(|_| transport(&endpoint, "too many lanes"))?,
        };
        let token = say_hello(&endpoint, &mut duplex, &hello)?;
        let resume = (!token.is_empty()).then_some(token);
        let acks = Arc::new(Mutex::new(Acks::default()));
        let answer = {
            let acks = acks.clone();
            let mut read = duplex.read;
            std::thread::Builder::new()
                .name("lvmsync-acks".into())
                .spawn(move || {
                    read_verdict(&mut read, |token| {
                        if let Ok(mut a) = acks.lock() {
                            a.last = Some(token);
                        }
                    })
                })
                .map_err(|e| transport(&endpoint, format!("cannot start a thread: {e}")))?
        };
        Ok(NetConn {
            endpoint,
            data: StripedWriter::new(duplex.write, lanes),
            acks,
            answer: Some(answer),
            resume,
            _keep: keep,
        })
    }

    /// If the receiver reported a failure, that explains a write error best. A write usually
    /// fails because the receiver gave up and closed, so give its Status a moment to arrive.
    /// The I/O error then carries the receiver's classified error, which names the endpoint
    /// and which the stream writer's `Error::io` passes on as it is.
    fn explain_write(&mut self, e: io::Error) -> io::Error {
        let deadline = std::time::Instant::now() + STATUS_GRACE;
        while self.answer.as_ref().is_some_and(|h| !h.is_finished())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if self.answer.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(Ok(Err(failure))) =
                self.answer.take().map(|h| h.join().unwrap_or(Ok(Ok(()))))
            {
                return io::Error::new(e.kind(), failure.into_error(&self.endpoint));
            }
        }
        e
    }
}

impl Write for NetConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.data.write(buf).map_err(|e| self.explain_write(e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.data.flush().map_err(|e| self.explain_write(e))
    }
}

impl Conn for NetConn {
    fn acked_checkpoint(&self) -> Option<Vec<u8>> {
        self.acks.lock().ok().and_then(|a| a.last.clone())
    }

    fn resume_point(&self) -> Option<&[u8]> {
        self.resume.as_deref()
    }

    fn finish(mut self: Box<Self>) -> Result<Outcome> {
        // A failed End write shows up below as a lost connection or the receiver's error.
        let _ = self.data.end();
        let answer = match self.answer.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("acknowledgement reader panicked"))),
            None => Err(io::Error::other("the connection already failed")),
        };
        let _ = self.data.close_main();
        let last_checkpoint = self.acked_checkpoint();
        match answer {
            Ok(Ok(())) => Ok(Outcome { last_checkpoint }),
            Ok(Err(failure)) => Err(failure.into_error(&self.endpoint)),
            Err(e) => Err(transport(
                &self.endpoint,
                format!(
                    "connection lost before the receiver confirmed the stream ({e}); \
                     rerun the send (with --resume to continue from the last checkpoint)"
                ),
            )),
        }
    }
}

impl Drop for NetConn {
    fn drop(&mut self) {
        if self.answer.is_some() {
            // Abandoned without `finish`: end our direction so the receiver sees a cut (EOF
            // before `End`) instead of waiting on a connection another handle keeps open.
            let _ = self.data.close_main();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--to /dev/null` (a character device, which `fsync` refuses with EINVAL) finishes:
    /// it used to fail at the end, and `send` then removed the device node.
    #[test]
    fn a_stream_into_a_character_device_finishes() {
        let mut conn = Box::new(FileConn::create(PathBuf::from("/dev/null")).unwrap());
        conn.write_all(&[1u8; 8192]).unwrap();
        conn.finish().unwrap();
    }
}
