//! The one walker: blake3 of every block of one or more inputs, over their first `len` bytes.
//!
//! One reader thread reads all inputs sequentially in large segments (several blocks each) into
//! a fixed pool of buffers; a few hashing threads hash the blocks of whichever segment is
//! ready; the caller's thread puts the segments' hashes back in order and hands them to the
//! visitor. Memory is the buffer pool (`IN_FLIGHT` segments per input) whatever the size.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::{channel, sync_channel, Receiver};
use std::sync::Mutex;

/// Bytes read from each input per segment (rounded up to a whole block).
pub const SEGMENT: u64 = 4 << 20;

/// Hashing threads (capped by the machine's parallelism).
const MAX_WORKERS: usize = 4;

/// A file or device to hash, with the path used in errors.
#[derive(Debug)]
pub struct Input {
    /// The open file or device.
    pub file: File,
    /// Where it was opened from.
    pub path: PathBuf,
}

/// One segment's bytes for every input, on its way from the reader to a hashing thread.
struct Job {
    index: u64,
    len: usize,
    bufs: Vec<Vec<u8>>,
}

/// Hash blocks `0..ceil(len / block_size)` of every input, calling `visit(block, hashes)` in
/// block order with one hash per input (the last block may be short: only its bytes count).
pub fn walk(
    inputs: &[Input],
    len: u64,
    block_size: u64,
    mut visit: impl FnMut(u64, &[blake3::Hash]),
) -> Result<()> {
    if len == 0 || inputs.is_empty() {
        return Ok(());
    }
    let seg_len = SEGMENT.next_multiple_of(block_size);
    let segments = len.div_ceil(seg_len);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS);
    let in_flight = workers + 2;
    let (free_tx, free_rx) = sync_channel::<Vec<Vec<u8>>>(in_flight);
    for _ in 0..in_flight {
        let set = inputs.iter().map(|_| vec![0u8; seg_len as usize]).collect();
        free_tx.send(set).expect("receiver is alive");
    }
    let (job_tx, job_rx) = sync_channel::<Job>(in_flight);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = channel::<Result<(u64, Vec<blake3::Hash>)>>();

    std::thread::scope(|s| {
        let reader_done = done_tx.clone();
        s.spawn(move || {
            for index in 0..segments {
                let Ok(mut bufs) = free_rx.recv() else { return };
                let offset = index * seg_len;
                let n = (len - offset).min(seg_len) as usize;
                for (input, buf) in inputs.iter().zip(bufs.iter_mut()) {
                    if let Err(e) = input.file.read_exact_at(&mut buf[..n], offset) {
                        let _ = reader_done.send(Err(Error::io(&input.path, e)));
                        return;
                    }
                }
                if job_tx
                    .send(Job {
                        index,
                        len: n,
                        bufs,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        for _ in 0..workers {
            let (job_rx, done_tx, free_tx) = (&job_rx, done_tx.clone(), free_tx.clone());
            s.spawn(move || hash_jobs(job_rx, block_size as usize, &done_tx, &free_tx));
        }
        // Only the threads hold senders now: if they all stop, the receivers below see it.
        drop((done_tx, free_tx));
        let order = Order {
            segments,
            blocks_per_segment: seg_len / block_size,
            inputs: inputs.len(),
        };
        collect_in_order(&done_rx, &order, &inputs[0].path, &mut visit)
    })
}

/// Hashing thread: hash each job's blocks, send the hashes on, give the buffers back.
fn hash_jobs(
    jobs: &Mutex<Receiver<Job>>,
    block_size: usize,
    done: &std::sync::mpsc::Sender<Result<(u64, Vec<blake3::Hash>)>>,
    free: &std::sync::mpsc::SyncSender<Vec<Vec<u8>>>,
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let hashes = job
            .bufs
            .iter()
            .flat_map(|b| b[..job.len].chunks(block_size).map(blake3::hash))
            .collect();
        if done.send(Ok((job.index, hashes))).is_err() {
            return;
        }
        let _ = free.send(job.bufs);
    }
}

/// How segment results map to blocks.
struct Order {
    segments: u64,
    blocks_per_segment: u64,
    inputs: usize,
}

/// Receive segments' hashes in any order and visit them in block order.
fn collect_in_order(
    done: &Receiver<Result<(u64, Vec<blake3::Hash>)>>,
    order: &Order,
    first_path: &std::path::Path,
    visit: &mut impl FnMut(u64, &[blake3::Hash]),
) -> Result<()> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut row = Vec::with_capacity(order.inputs);
    while next < order.segments {
        let Ok(result) = done.recv() else {
            let stopped = std::io::Error::other("hashing threads stopped before the end");
            return Err(Error::io(first_path, stopped));
        };
        let (index, hashes) = result?;
        pending.insert(index, hashes);
        while let Some(hashes) = pending.remove(&next) {
            // Hashes are input-major: input 0's blocks, then input 1's, ...
            let blocks = hashes.len() / order.inputs;
            for b in 0..blocks {
                row.clear();
                row.extend((0..order.inputs).map(|i| hashes[i * blocks + b]));
                visit(next * order.blocks_per_segment + b as u64, &row);
            }
            next += 1;
        }
    }
    Ok(())
}
