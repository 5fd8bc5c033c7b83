//! The framed control channel shared by tls://, quic:// and tcp:// (docs/transport.md).
//!
//! Every frame is `kind: u8, len: u32 BE, payload[len]`. The sender's byte stream travels as
//! `Data` frames ended by `End`, so the receiver can tell a clean end from a cut connection;
//! the receiver answers with `Checkpoint` acks and one final `Status` (a failed one followed by
//! its `Class`). Lengths are checked against fixed caps before anything is allocated or read.

use crate::ErrorClass;
use std::io::{self, Read, Write};

/// Largest `Data` payload a sender produces and a receiver accepts.
pub const MAX_DATA: usize = 256 * 1024;
/// Largest payload of any other frame (names, messages).
pub const MAX_CONTROL: usize = 64 * 1024;
/// Protocol version carried in `Hello`.
pub const VERSION: u8 = 1;
/// First bytes of every `Hello` payload, so a stray client is recognised at once.
pub const MAGIC: &[u8; 4] = b"LVMT";

const HEADER: usize = 5;
const K_HELLO: u8 = b'H';
const K_ACCEPT: u8 = b'A';
const K_REFUSE: u8 = b'R';
const K_DATA: u8 = b'D';
const K_END: u8 = b'E';
const K_CHECKPOINT: u8 = b'C';
const K_STATUS: u8 = b'S';
const K_LANE: u8 = b'L';
const K_QUERY: u8 = b'Q';
const K_CLASS: u8 = b'K';
/// First byte of a TLS handshake record: never a frame kind, so a TLS client is recognised.
const TLS_HANDSHAKE: u8 = 0x16;

/// A non-data frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Sender → receiver, first frame: the destination name and how many extra lanes follow.
    Hello {
        /// The name the server maps to a device (`--allow name=device`).
        name: String,
        /// Extra parallel data streams (QUIC only; 0 elsewhere).
        lanes: u16,
    },
    /// Receiver → sender: go ahead; the payload is the receiver's resume point for this
    /// destination (an opaque stream checkpoint), empty when there is nothing to resume.
    Accept(Vec<u8>),
    /// Receiver → sender: refused, with the reason.
    Refuse(String),
    /// Sender → receiver: the byte stream ended cleanly.
    End,
    /// Receiver → sender: everything up to this stream checkpoint (opaque bytes defined by
    /// the stream format) is durable.
    Checkpoint(Vec<u8>),
    /// Receiver → sender: the outcome; `Err` carries the receiver's error text. The last
    /// frame, but for the `Class` that may follow a failure.
    Status(Result<(), String>),
    /// Receiver → sender, right after a failed `Status`: the failure's class (its exit code),
    /// so the sender exits as a local receiver would have. Senders older than this frame stop
    /// reading at `Status` and never see it; a receiver older than it never sends it.
    Class(ErrorClass),
    /// First frame of an extra QUIC lane: its index (0-based).
    Lane(u16),
    /// Sender → receiver, first frame instead of `Hello`: `lvmsync verify` asks about the
    /// named destination; both directions then carry the hash-query protocol in Data frames.
    Query {
        /// The name the server maps to a device (`--allow name=device`).
        name: String,
    },
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Control {
    /// The frame's bytes: header and payload.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, Vec<u8>) = match self {
            Control::Hello { name, lanes } => (K_HELLO, hello_payload(name, *lanes)),
            Control::Query { name } => (K_QUERY, hello_payload(name, 0)),
            Control::Accept(resume) => (K_ACCEPT, resume.clone()),
            Control::Refuse(why) => (K_REFUSE, why.as_bytes().to_vec()),
            Control::End => (K_END, Vec::new()),
            Control::Checkpoint(token) => (K_CHECKPOINT, token.clone()),
            Control::Status(Ok(())) => (K_STATUS, vec![0]),
            Control::Status(Err(msg)) => {
                let mut p = vec![1];
                p.extend_from_slice(msg.as_bytes());
                (K_STATUS, p)
            }
            Control::Lane(i) => (K_LANE, i.to_be_bytes().to_vec()),
            Control::Class(class) => (K_CLASS, vec![*class as u8]),
        };
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Decode a control frame from its kind byte and payload.
    pub fn decode(kind: u8, p: &[u8]) -> io::Result<Control> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let fixed = |n: usize| {
            if p.len() == n {
                Ok(())
            } else {
                Err(invalid(format!(
                    "frame {:?} has {} payload bytes, expected {n}",
                    kind as char,
                    p.len()
                )))
            }
        };
        Ok(match kind {
            K_HELLO | K_QUERY => {
                if p.len() < 7 || &p[..4] != MAGIC {
                    return Err(invalid("not an lvmsync transport hello"));
                }
                if p[4] != VERSION {
                    return Err(invalid(format!(
                        "transport protocol version {} (this lvmsync speaks {VERSION}); upgrade the older side",
                        p[4]
                    )));
                }
                let name = std::str::from_utf8(&p[7..])
                    .map_err(|_| invalid("destination name is not UTF-8"))?;
                let (name, lanes) = (name.to_string(), u16::from_be_bytes([p[5], p[6]]));
                if kind == K_QUERY {
                    Control::Query { name }
                } else {
                    Control::Hello { name, lanes }
                }
            }
            K_ACCEPT => Control::Accept(p.to_vec()),
            K_REFUSE => Control::Refuse(text(p)),
            K_END => fixed(0).map(|_| Control::End)?,
            K_CHECKPOINT => Control::Checkpoint(p.to_vec()),
            K_STATUS => match p.split_first() {
                Some((0, [])) => Control::Status(Ok(())),
                Some((1, msg)) => Control::Status(Err(text(msg))),
                _ => return Err(invalid("bad status frame")),
            },
            K_LANE => {
                fixed(2)?;
                Control::Lane(u16::from_be_bytes([p[0], p[1]]))
            }
            K_CLASS => {
                fixed(1)?;
                Control::Class(
                    ErrorClass::from_code(p[0])
                        .ok_or_else(|| invalid(format!("unknown error class {}", p[0])))?,
                )
            }
            other => return Err(invalid(format!("unknown frame kind 0x{other:02x}"))),
        })
    }
}

/// Hello and Query payload: magic, version, lanes, name.
fn hello_payload(name: &str, lanes: u16) -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.push(VERSION);
    p.extend_from_slice(&lanes.to_be_bytes());
    p.extend_from_slice(name.as_bytes());
    p
}

/// A frame as read off the wire: data payloads are left in the reader for the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A `Data` frame of this many bytes; the payload follows in the stream.
    Data(usize),
    /// Any other frame.
    Control(Control),
}

/// Fill `buf` completely from `r`, retrying interrupted reads. `Ok(false)` is a clean EOF
/// before the first byte; an EOF after it is `UnexpectedEof`. Shared by the framed control
/// channel and the blockhash query messages, whose headers are read the same way.
pub(crate) fn fill_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Read one frame header (and a control payload). `Ok(None)` is a clean EOF before any byte.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Incoming>> {
    let mut h = [0u8; HEADER];
    if !fill_or_eof(r, &mut h)? {
        return Ok(None);
    }
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if h[0] == TLS_HANDSHAKE {
        return Err(invalid(
            "got a TLS handshake: a tls:// client on a plaintext tcp:// port?",
        ));
    }
    if h[0] == K_DATA {
        if len > MAX_DATA {
            return Err(invalid(format!(
                "data frame of {len} bytes exceeds {MAX_DATA}"
            )));
        }
        return Ok(Some(Incoming::Data(len)));
    }
    if len > MAX_CONTROL {
        return Err(invalid(format!(
            "control frame of {len} bytes exceeds {MAX_CONTROL}"
        )));
    }
    let mut p = vec![0u8; len];
    r.read_exact(&mut p)?;
    Control::decode(h[0], &p).map(|c| Some(Incoming::Control(c)))
}

/// Read the next frame, requiring a control frame (a clean EOF is an error here).
pub fn read_control(r: &mut impl Read) -> io::Result<Control> {
    match read_frame(r)? {
        Some(Incoming::Control(c)) => Ok(c),
        Some(Incoming::Data(_)) => Err(invalid("unexpected data frame")),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed without a reply",
        )),
    }
}

/// `Write` adaptor that packs the bytes written into `Data` frames of up to [`MAX_DATA`].
pub struct DataWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> DataWriter<W> {
    /// Frame everything written to `inner`.
    pub fn new(inner: W) -> Self {
        let mut buf = Vec::with_capacity(HEADER + MAX_DATA);
        buf.extend_from_slice(&[K_DATA, 0, 0, 0, 0]);
        DataWriter { inner, buf }
    }

    fn emit(&mut self) -> io::Result<()> {
        let len = self.buf.len() - HEADER;
        if len == 0 {
            return Ok(());
        }
        self.buf[1..HEADER].copy_from_slice(&(len as u32).to_be_bytes());
        self.inner.write_all(&self.buf)?;
        self.buf.truncate(HEADER);
        Ok(())
    }

    /// Send any buffered data, then a control frame (`End`, `Lane`, ...).
    pub fn send_control(&mut self, c: &Control) -> io::Result<()> {
        self.emit()?;
        self.inner.write_all(&c.encode())?;
        self.inner.flush()
    }

    /// The underlying writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for DataWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() == HEADER && data.len() >= MAX_DATA / 4 {
            // Big writes skip the copy into our buffer: header, then the caller's bytes.
            let n = data.len().min(MAX_DATA);
            let mut header = [K_DATA, 0, 0, 0, 0];
            header[1..].copy_from_slice(&(n as u32).to_be_bytes());
            write_all_vectored(&mut self.inner, &header, &data[..n])?;
            return Ok(n);
        }
        let room = HEADER + MAX_DATA - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == HEADER + MAX_DATA {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

/// Write `head` then `body` with vectored writes: one TLS record run and one system call
/// for a frame where the writer supports it (TLS, TCP), two plain writes elsewhere.
fn write_all_vectored(w: &mut impl Write, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut bufs = [io::IoSlice::new(head), io::IoSlice::new(body)];
    let mut bufs = &mut bufs[..];
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `Read` adaptor that yields the payloads of `Data` frames and EOF at `End`.
///
/// A connection that closes before `End` is an `UnexpectedEof` error, never a silent short
/// stream; any other frame in the data direction is `InvalidData`.
pub struct DataReader<R: Read> {
    inner: R,
    left: usize,
    ended: bool,
}

impl<R: Read> DataReader<R> {
    /// Read data frames from `inner`.
    pub fn new(inner: R) -> Self {
        DataReader {
            inner,
            left: 0,
            ended: false,
        }
    }
}

impl<R: Read> Read for DataReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.left == 0 {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            match read_frame(&mut self.inner)? {
                Some(Incoming::Data(n)) => self.left = n,
                Some(Incoming::Control(Control::End)) => self.ended = true,
                Some(Incoming::Control(c)) => {
                    return Err(invalid(format!("unexpected {c:?} in the data stream")))
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the sender's connection closed before the end of the stream (cut?)",
                    ))
                }
            }
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the sender's connection closed inside a data frame (cut?)",
            ));
        }
        self.left -= n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
