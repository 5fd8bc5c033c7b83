//! One byte stream striped over several parallel streams (quic:// lanes) and joined again in
//! order at the receiver.
//!
//! The stream is cut into units of [`UNIT`] bytes; unit *k* travels on stream *k mod n*
//! (stream 0 is the main one). Each stream is an ordinary run of `Data` frames ended by `End`,
//! so a cut stream is still an `UnexpectedEof` and a clean end is `End` on every stream. The
//! receiver reads the units back in the same round-robin order: no sequence numbers, no
//! reordering buffer of our own; memory stays bounded by each stream's flow-control window.
//! With one stream this is exactly the unstriped protocol.

use super::duplex::WriteHalf;
use super::frame::{Control, DataWriter, MAX_DATA};
use std::io::{self, Read, Write};

/// Bytes of the stream sent on one lane before moving to the next (whole data frames).
pub const UNIT: usize = 4 * MAX_DATA;

/// The sender's side: writes go round-robin, [`UNIT`] bytes per lane.
pub struct StripedWriter {
    lanes: Vec<DataWriter<Box<dyn WriteHalf>>>,
    cur: usize,
    filled: usize,
}

impl StripedWriter {
    /// Stripe over `main` followed by `extra` lanes (none: a plain framed stream).
    pub fn new(main: Box<dyn WriteHalf>, extra: Vec<Box<dyn WriteHalf>>) -> Self {
        let lanes = std::iter::once(main)
            .chain(extra)
            .map(DataWriter::new)
            .collect();
        StripedWriter {
            lanes,
            cur: 0,
            filled: 0,
        }
    }

    /// End the byte stream: `End` on every lane, and close the extra lanes. The main stream
    /// stays open for the receiver's answer ([`Self::close_main`]).
    pub fn end(&mut self) -> io::Result<()> {
        for lane in &mut self.lanes {
            lane.send_control(&Control::End)?;
        }
        for lane in &mut self.lanes[1..] {
            lane.get_mut().close()?;
        }
        Ok(())
    }

    /// Close our direction of the main stream (after the answer, or when abandoning).
    pub fn close_main(&mut self) -> io::Result<()> {
        self.lanes[0].get_mut().close()
    }
}

impl Write for StripedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = UNIT - self.filled;
        let n = self.lanes[self.cur].write(&buf[..buf.len().min(room)])?;
        self.filled += n;
        if self.filled == UNIT && self.lanes.len() > 1 {
            // The unit must reach the receiver before it waits for the next lane's unit.
            self.lanes[self.cur].flush()?;
            self.cur = (self.cur + 1) % self.lanes.len();
            self.filled = 0;
        } else if self.filled == UNIT {
            self.filled = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Only the current lane can hold buffered bytes: the others were flushed at their
        // unit boundary.
        self.lanes[self.cur].flush()
    }
}

/// The receiver's side: reads the units back from the lanes in round-robin order.
struct Joined {
    lanes: Vec<Box<dyn Read + Send>>,
    cur: usize,
    left: usize,
    ended: bool,
}

/// Join `main` and `extra` lanes (each a reader of `Data` payloads, EOF at `End`) into the
/// one byte stream the sender striped; with no extra lanes, `main` itself.
pub fn join(main: Box<dyn Read + Send>, extra: Vec<Box<dyn Read + Send>>) -> Box<dyn Read + Send> {
    if extra.is_empty() {
        return main;
    }
    Box::new(Joined {
        lanes: std::iter::once(main).chain(extra).collect(),
        cur: 0,
        left: UNIT,
        ended: false,
    })
}

impl Read for Joined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(self.left);
        let n = self.lanes[self.cur].read(&mut buf[..want])?;
        if n == 0 {
            // The stream ends inside this lane's unit: every other lane must be at its End.
            for (i, lane) in self.lanes.iter_mut().enumerate() {
                if i != self.cur && lane.read(&mut [0u8; 1])? != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("QUIC lane {i} carries data past the end of the stream"),
                    ));
                }
            }
            self.ended = true;
            return Ok(0);
        }
        self.left -= n;
        if self.left == 0 {
            self.cur = (self.cur + 1) % self.lanes.len();
            self.left = UNIT;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::frame::DataReader;
    use std::sync::{Arc, Mutex};

    /// An in-memory lane: what the sender wrote, shared with the test.
    #[derive(Clone, Default)]
    struct Pipe(Arc<Mutex<Vec<u8>>>);

    impl Write for Pipe {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl WriteHalf for Pipe {
        fn close(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn stripe(data: &[u8], n: usize, step: usize) -> Vec<Vec<u8>> {
        let pipes: Vec<Pipe> = (0..n).map(|_| Pipe::default()).collect();
        let extra = pipes[1..]
            .iter()
            .map(|p| Box::new(p.clone()) as Box<dyn WriteHalf>)
            .collect();
        let mut w = StripedWriter::new(Box::new(pipes[0].clone()), extra);
        for piece in data.chunks(step) {
            w.write_all(piece).unwrap();
        }
        w.end().unwrap();
        pipes.iter().map(|p| p.0.lock().unwrap().clone()).collect()
    }

    fn readers(wires: &[Vec<u8>]) -> Vec<Box<dyn Read + Send>> {
        wires
            .iter()
            .map(|w| Box::new(DataReader::new(io::Cursor::new(w.clone()))) as Box<dyn Read + Send>)
            .collect()
    }

    fn read_all(mut r: Box<dyn Read + Send>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn striped_bytes_come_back_in_order() {
        let data: Vec<u8> = (0..3 * UNIT + 12345).map(|i| (i * 7 % 251) as u8).collect();
        for (n, step) in [(1, 100_000), (2, 7919), (4, UNIT), (3, 3 * UNIT / 2)] {
            for len in [0, 1, UNIT, 2 * UNIT, data.len()] {
                let wires = stripe(&data[..len], n, step);
                if len >= n * UNIT {
                    assert!(wires.iter().skip(1).all(|w| w.len() > 5), "unused lane");
                }
                let mut lanes = readers(&wires);
                let main = lanes.remove(0);
                assert_eq!(
                    read_all(join(main, lanes)).unwrap(),
                    &data[..len],
                    "{n} {len}"
                );
            }
        }
    }

    #[test]
    fn a_cut_lane_is_an_error_not_a_short_stream() {
        let data = vec![9u8; 5 * UNIT];
        let mut wires = stripe(&data, 3, UNIT);
        let cut = wires[2].len() - 5 - 100;
        wires[2].truncate(cut);
        let mut lanes = readers(&wires);
        let main = lanes.remove(0);
        let err = read_all(join(main, lanes)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn data_past_the_end_on_another_lane_is_refused() {
        let mut wires = stripe(&[1u8; 10], 2, 10);
        // Lane 1 carries a data frame the round-robin order never reaches.
        wires[1] = stripe(&[2u8; 10], 1, 10).remove(0);
        let mut lanes = readers(&wires);
        let main = lanes.remove(0);
        let err = read_all(join(main, lanes)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
