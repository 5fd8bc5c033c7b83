//! The one walker: reads one or more inputs segment by segment and works on the segments on
//! several threads, handing the results back in order.
//!
//! One reader thread reads all inputs sequentially in large segments into a fixed pool of
//! buffers, skipping the holes of sparse files (they are zero-filled and flagged instead of
//! read); a few worker threads run the caller's work on whichever segment is ready; the
//! caller's thread puts the results back in order and hands them to the visitor. Memory is the
//! buffer pool (`workers + 2` segments per input) whatever the size. [`walk`] is the block-hash
//! walk on top of it: blake3 of every block of every input.

use super::holes::Holes;
use crate::error::{Error, Result};
use crate::stream::encode::is_zero;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::{channel, sync_channel};
use std::sync::{Mutex, OnceLock};

/// Bytes read from each input per segment (rounded up to a whole block).
pub const SEGMENT: u64 = 4 << 20;

/// Granularity of hole detection: a unit is skipped when it lies wholly in a hole. Equal to
/// the content fingerprint's leaf, so a hole leaf is known without looking at its bytes.
pub const UNIT: u64 = crate::stream::fingerprint::LEAF;

/// Worker threads (capped by the machine's parallelism).
const MAX_WORKERS: usize = 4;

/// A file or device to read, with the path used in errors.
#[derive(Debug)]
pub struct Input {
    /// The open file or device.
    pub file: File,
    /// Where it was opened from.
    pub path: PathBuf,
    /// Its length: bytes past it read as zeroes (and count as a hole).
    pub len: u64,
}

/// One segment's bytes of every input, as the reader thread produced it.
pub struct Segment {
    /// Segment number (0, 1, ...).
    pub index: u64,
    /// Byte offset of the segment's start in every input.
    pub offset: u64,
    /// Bytes of the segment (the last one may be short).
    pub len: usize,
    /// Each input's bytes of the segment (`len` of each is meaningful).
    pub bufs: Vec<Vec<u8>>,
    /// Per input, one flag per [`UNIT`] of the segment: the unit lies in a hole (zero-filled
    /// without a read).
    holes: Vec<Vec<bool>>,
}

impl Segment {
    /// True when input `input`'s bytes `from..to` (relative to the segment) are known to be
    /// zero without looking: every unit they touch is a hole.
    pub fn is_hole(&self, input: usize, from: usize, to: usize) -> bool {
        let unit = UNIT as usize;
        to > from
            && self.holes[input][from / unit..=(to - 1) / unit]
                .iter()
                .all(|&h| h)
    }

    /// Input `input`'s bytes `from..to` (relative to the segment).
    pub fn bytes(&self, input: usize, from: usize, to: usize) -> &[u8] {
        &self.bufs[input][from..to]
    }
}

/// Read `len` bytes of every input in segments of `seg_len` bytes, run `work` on each segment
/// on the worker threads, and call `visit(segment index, result)` in segment order on the
/// caller's thread.
pub fn walk_segments<T: Send>(
    inputs: &[Input],
    len: u64,
    seg_len: u64,
    work: impl Fn(&Segment) -> T + Sync,
    mut visit: impl FnMut(u64, T),
) -> Result<()> {
    if len == 0 || inputs.is_empty() {
        return Ok(());
    }
    let segments = len.div_ceil(seg_len);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS);
    let in_flight = workers + 2;
    let (free_tx, free_rx) = sync_channel::<Buffers>(in_flight);
    for _ in 0..in_flight {
        let set = Buffers {
            bufs: inputs.iter().map(|_| vec![0u8; seg_len as usize]).collect(),
            // Fresh buffers are zero: every unit already reads as a hole would.
            zeroed: vec![vec![true; seg_len.div_ceil(UNIT) as usize]; inputs.len()],
        };
        free_tx.send(set).expect("receiver is alive");
    }
    let (job_tx, job_rx) = sync_channel::<Segment>(in_flight);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = channel::<Result<(u64, T)>>();

    std::thread::scope(|s| {
        let reader_done = done_tx.clone();
        s.spawn(move || {
            let mut holes: Vec<Holes> = inputs.iter().map(|i| Holes::new(&i.file)).collect();
            for index in 0..segments {
                let Ok(set) = free_rx.recv() else { return };
                let offset = index * seg_len;
                let n = (len - offset).min(seg_len) as usize;
                let seg = read_segment(inputs, &mut holes, index, offset, n, set);
                let sent = match seg {
                    Ok(seg) => job_tx.send(seg).is_ok(),
                    Err(e) => {
                        let _ = reader_done.send(Err(e));
                        false
                    }
                };
                if !sent {
                    return;
                }
            }
        });
        for _ in 0..workers {
            let (job_rx, done_tx, free_tx, work) =
                (&job_rx, done_tx.clone(), free_tx.clone(), &work);
            s.spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(seg) = job else { return };
                let out = work(&seg);
                if done_tx.send(Ok((seg.index, out))).is_err() {
                    return;
                }
                let _ = free_tx.send(Buffers {
                    bufs: seg.bufs,
                    zeroed: seg.holes,
                });
            });
        }
        // Only the threads hold senders now: if they all stop, the receivers below see it.
        drop((done_tx, free_tx));
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        while next < segments {
            let Ok(result) = done_rx.recv() else {
                let stopped = std::io::Error::other("worker threads stopped before the end");
                return Err(Error::io(&inputs[0].path, stopped));
            };
            let (index, out) = result?;
            pending.insert(index, out);
            while let Some(out) = pending.remove(&next) {
                visit(next, out);
                next += 1;
            }
        }
        Ok(())
    })
}

/// One set of segment buffers (one per input), and which of their units are known to hold
/// only zero bytes (so a hole there needs no zero-filling).
struct Buffers {
    bufs: Vec<Vec<u8>>,
    zeroed: Vec<Vec<bool>>,
}

/// Read one segment of every input into `set`: hole units and bytes past an input's end are
/// zero-filled (unless they already are) and flagged, runs of data units are read with one
/// `pread` each.
fn read_segment(
    inputs: &[Input],
    holes: &mut [Holes],
    index: u64,
    offset: u64,
    n: usize,
    set: Buffers,
) -> Result<Segment> {
    let Buffers { mut bufs, zeroed } = set;
    let unit = UNIT as usize;
    let units = n.div_ceil(unit);
    let mut flags = Vec::with_capacity(inputs.len());
    for (((input, holes), buf), zeroed) in inputs
        .iter()
        .zip(holes.iter_mut())
        .zip(bufs.iter_mut())
        .zip(&zeroed)
    {
        let mut hole: Vec<bool> = (0..units)
            .map(|u| {
                let from = offset + (u * unit) as u64;
                from >= input.len || holes.is_hole(from, (from + unit as u64).min(input.len))
            })
            .collect();
        let mut u = 0;
        while u < units {
            let run = hole[u..].iter().take_while(|&&h| h == hole[u]).count();
            let (from, to) = (u * unit, ((u + run) * unit).min(n));
            if hole[u] {
                for z in u..u + run {
                    if !zeroed[z] {
                        buf[z * unit..((z + 1) * unit).min(n)].fill(0);
                    }
                }
            } else {
                // The run may end past the input (its last unit partly beyond the end).
                let have = (input.len - (offset + from as u64)).min((to - from) as u64) as usize;
                input
                    .file
                    .read_exact_at(&mut buf[from..from + have], offset + from as u64)
                    .map_err(|e| Error::io(&input.path, e))?;
                buf[from + have..to].fill(0);
            }
            u += run;
        }
        // Units past a short last segment keep what they held: unknown from now on.
        hole.resize(zeroed.len(), false);
        flags.push(hole);
    }
    Ok(Segment {
        index,
        offset,
        len: n,
        bufs,
        holes: flags,
    })
}

/// blake3 of input `input`'s bytes `from..to` of `seg`. A whole block (`to - from == full`)
/// that lies in a hole or is all zero gets `zero`, the hash of `full` zero bytes, without being
/// hashed (checking for zeroes is several times cheaper than hashing).
pub fn hash_range(
    seg: &Segment,
    input: usize,
    (from, to): (usize, usize),
    full: usize,
    zero: &OnceLock<blake3::Hash>,
) -> blake3::Hash {
    let bytes = seg.bytes(input, from, to);
    if to - from == full && (seg.is_hole(input, from, to) || is_zero(bytes)) {
        *zero.get_or_init(|| blake3::hash(&vec![0u8; full]))
    } else {
        blake3::hash(bytes)
    }
}

/// Hash blocks `0..ceil(len / block_size)` of every input, calling `visit(block, hashes)` in
/// block order with one hash per input (the last block may be short: only its bytes count).
pub fn walk(
    inputs: &[Input],
    len: u64,
    block_size: u64,
    mut visit: impl FnMut(u64, &[blake3::Hash]),
) -> Result<()> {
    let seg_len = SEGMENT.next_multiple_of(block_size);
    let blocks_per_segment = seg_len / block_size;
    let zero = OnceLock::new();
    let bs = block_size as usize;
    let work = |seg: &Segment| -> Vec<blake3::Hash> {
        // Input-major: input 0's blocks, then input 1's, ...
        let mut hashes = Vec::with_capacity(inputs.len() * seg.len.div_ceil(bs));
        for i in 0..inputs.len() {
            for from in (0..seg.len).step_by(bs) {
                let to = (from + bs).min(seg.len);
                hashes.push(hash_range(seg, i, (from, to), bs, &zero));
            }
        }
        hashes
    };
    let mut row = Vec::with_capacity(inputs.len());
    walk_segments(inputs, len, seg_len, work, |index, hashes| {
        let blocks = hashes.len() / inputs.len();
        for b in 0..blocks {
            row.clear();
            row.extend((0..inputs.len()).map(|i| hashes[i * blocks + b]));
            visit(index * blocks_per_segment + b as u64, &row);
        }
    })
}
