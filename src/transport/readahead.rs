//! Read-ahead on its own thread, so TLS decryption overlaps with whatever the receiver does
//! with the bytes (decompress, hash, journal, write). A fixed pool of buffers bounds memory.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Size of each read-ahead buffer.
const CHUNK: usize = 256 * 1024;
/// Buffers in flight (filled or being filled): the memory bound is `DEPTH * CHUNK`.
const DEPTH: usize = 4;

/// A `Read` whose inner reader runs ahead on a background thread.
pub struct ReadAhead {
    full: Receiver<io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    /// Start reading `inner` on a new thread.
    pub fn spawn(mut inner: impl Read + Send + 'static) -> io::Result<Self> {
        let (full_tx, full) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(DEPTH);
        for _ in 0..DEPTH - 1 {
            empty.send(vec![0; CHUNK]).expect("receiver alive");
        }
        std::thread::Builder::new()
            .name("lvmsync-readahead".into())
            .spawn(move || {
                while let Ok(mut buf) = empty_rx.recv() {
                    buf.resize(CHUNK, 0);
                    let got = loop {
                        match inner.read(&mut buf) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            other => break other,
                        }
                    };
                    let stop = !matches!(got, Ok(1..));
                    let msg = got.map(|n| {
                        buf.truncate(n);
                        buf
                    });
                    if full_tx.send(msg).is_err() || stop {
                        return;
                    }
                }
            })?;
        Ok(ReadAhead {
            full,
            empty,
            cur: Vec::new(),
            pos: 0,
            done: false,
        })
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            let next = match self.full.recv() {
                Ok(r) => r?,
                Err(_) => return Err(io::Error::other("read-ahead thread ended unexpectedly")),
            };
            if next.is_empty() {
                self.done = true;
            }
            let old = std::mem::replace(&mut self.cur, next);
            self.pos = 0;
            // The producer may already be gone (end of stream); a lost buffer is harmless.
            let _ = self.empty.try_send(old);
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
