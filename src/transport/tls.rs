//! TLS over TCP with the read and write directions usable from two threads at once.
//!
//! rustls keeps one state machine per connection; both halves share it behind a mutex, and
//! each has its own clone of the socket. The reader never blocks on the socket while holding
//! the lock, so the writer is only ever delayed by record processing, not by the network.

use super::duplex::{Duplex, WriteHalf};
use super::tlsconf::explain;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

type Shared = Arc<Mutex<rustls::Connection>>;

const TLS_READ_CHUNK: usize = 256 * 1024;
const SEND_BUFFER: usize = 1 << 20;

fn lock(s: &Shared) -> io::Result<MutexGuard<'_, rustls::Connection>> {
    s.lock()
        .map_err(|_| io::Error::other("TLS connection state poisoned by a panic"))
}

/// Replace a rustls error inside an I/O error by an explanation a person can act on.
pub fn explain_io(e: io::Error) -> io::Error {
    let text = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(explain);
    match text {
        Some(t) => io::Error::new(e.kind(), t),
        None => e,
    }
}

/// Run the handshake to completion on `sock`, then split the connection.
pub fn handshake(mut conn: rustls::Connection, mut sock: TcpStream) -> io::Result<Duplex> {
    sock.set_nodelay(true)?;
    let peer = sock.peer_addr()?.to_string();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => io::Error::new(
                e.kind(),
                "the peer closed the connection during the TLS handshake (not a TLS port?)",
            ),
            _ => explain_io(e),
        })?;
    }
    while conn.wants_write() {
        conn.write_tls(&mut sock)?;
    }
    // Let a whole data frame's records go out in one vectored write instead of four.
    conn.set_buffer_limit(Some(SEND_BUFFER));
    let shared: Shared = Arc::new(Mutex::new(conn));
    let read = TlsRead {
        shared: shared.clone(),
        sock: sock.try_clone()?,
        buf: vec![0; TLS_READ_CHUNK].into_boxed_slice(),
        start: 0,
        end: 0,
    };
    Ok(Duplex {
        read: Box::new(read),
        write: Box::new(TlsWrite { shared, sock }),
        peer,
    })
}

struct TlsRead {
    shared: Shared,
    sock: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// Feed ciphertext into rustls and answer whatever it wants sent (alerts, key updates).
fn feed(conn: &mut rustls::Connection, mut bytes: &[u8], sock: &TcpStream) -> io::Result<usize> {
    let before = bytes.len();
    conn.read_tls(&mut bytes)?;
    let processed = conn.process_new_packets();
    let mut out = sock;
    while conn.wants_write() {
        if conn.write_tls(&mut out).is_err() {
            break;
        }
    }
    processed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, explain(&e)))?;
    Ok(before - bytes.len())
}

impl TlsRead {
    /// Move decrypted plaintext into `out` (not empty): `Some(n)` bytes, `Some(0)` once the
    /// peer has closed cleanly (close_notify), `None` when rustls holds no plaintext yet.
    fn drain(conn: &mut rustls::Connection, out: &mut [u8]) -> io::Result<Option<usize>> {
        match conn.reader().read(out) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Read for TlsRead {
    /// Decrypt as many buffered records as fit in `out` under one lock, so a reader with a big
    /// buffer gets up to 256 KiB per call instead of one 16 KiB record (fewer hand-offs to the
    /// read-ahead consumer). Reads the socket only when nothing at all could be returned.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut conn = lock(&self.shared)?;
                let mut got = 0;
                let mut closed = false;
                // rustls holds at most ~16 KiB of plaintext at a time: alternate feeding
                // ciphertext and draining plaintext until `out` is full, we run dry, or the
                // peer's close_notify ends the stream (returned at once, not after its FIN).
                loop {
                    match Self::drain(&mut conn, &mut out[got..])? {
                        Some(0) => closed = true,
                        Some(n) => got += n,
                        None => {}
                    }
                    if closed || got == out.len() || self.start == self.end {
                        break;
                    }
                    let used = feed(&mut conn, &self.buf[self.start..self.end], &self.sock)?;
                    self.start += used;
                }
                if got > 0 || closed {
                    return Ok(got);
                }
            }
            let n = loop {
                match self.sock.read(&mut self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            (self.start, self.end) = (0, n);
            if n == 0 {
                let mut conn = lock(&self.shared)?;
                feed(&mut conn, &[], &self.sock)?;
                return conn.reader().read(out);
            }
        }
    }
}

struct TlsWrite {
    shared: Shared,
    sock: TcpStream,
}

impl Write for TlsWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    /// Several slices (a frame header and its payload) become one run of records and go out
    /// in one vectored socket write.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut conn = lock(&self.shared)?;
        let n = conn.writer().write_vectored(bufs)?;
        while conn.wants_write() {
            conn.write_tls(&mut self.sock)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut conn = lock(&self.shared)?;
        while conn.wants_write() {
            conn.write_tls(&mut self.sock)?;
        }
        self.sock.flush()
    }
}

impl WriteHalf for TlsWrite {
    fn close(&mut self) -> io::Result<()> {
        {
            let mut conn = lock(&self.shared)?;
            conn.send_close_notify();
        }
        self.flush()?;
        match self.sock.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        }
    }
}
