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
    full: Receiver<io::Result<(Vec<u8>, usize)>>,
    empty: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    /// Start reading `inner` on a new thread.
    pub fn spawn(mut inner: impl Read + Send + 'static) -> io::Result<Self> {
        let (full_tx, full) = sync_channel::<io::Result<(Vec<u8>, usize)>>(DEPTH);
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(DEPTH);
        for _ in 0..DEPTH {
            empty.send(vec![0; CHUNK]).expect("receiver alive");
        }
        std::thread::Builder::new()
            .name("lvmsync-readahead".into())
            .spawn(move || {
                // Buffers keep their full length (no re-zeroing); the count travels beside.
                while let Ok(mut buf) = empty_rx.recv() {
                    let got = loop {
                        match inner.read(&mut buf) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            other => break other,
                        }
                    };
                    let stop = !matches!(got, Ok(1..));
                    let msg = got.map(|n| (buf, n));
                    if full_tx.send(msg).is_err() || stop {
                        return;
                    }
                }
            })?;
        Ok(ReadAhead {
            full,
            empty,
            cur: Vec::new(),
            len: 0,
            pos: 0,
            done: false,
        })
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.len {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            let (next, len) = match self.full.recv() {
                Ok(r) => r?,
                Err(_) => return Err(io::Error::other("read-ahead thread ended unexpectedly")),
            };
            self.done = len == 0;
            let old = std::mem::replace(&mut self.cur, next);
            (self.len, self.pos) = (len, 0);
            if !old.is_empty() {
                // The producer may already be gone (end of stream); a lost buffer is harmless.
                let _ = self.empty.try_send(old);
            }
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `data` in odd-sized pieces, then fails (or ends) as told.
    struct Source {
        data: Vec<u8>,
        pos: usize,
        fail: bool,
    }

    impl Read for Source {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return match self.fail {
                    true => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut")),
                    false => Ok(0),
                };
            }
            let n = out.len().min(7919).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn passes_bytes_then_eof_or_error() {
        let data: Vec<u8> = (0..3 * CHUNK + 5).map(|i| (i % 253) as u8).collect();
        for fail in [false, true] {
            let src = Source {
                data: data.clone(),
                pos: 0,
                fail,
            };
            let mut ahead = ReadAhead::spawn(src).unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 100_000];
            let end = loop {
                match ahead.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => break Some(e.kind()),
                }
            };
            assert_eq!(got, data);
            assert_eq!(end, fail.then_some(io::ErrorKind::UnexpectedEof));
        }
    }
}
