//! Read-ahead for an `O_DIRECT` source (the live pool's `_tmeta`): a long-lived pool of worker
//! threads that reads the blocks a walk has hinted and verifies their btree-node checksums, so
//! that the walking thread mostly takes blocks that are already read and checked, and many
//! reads are in flight at once (`O_DIRECT` gets no read-ahead from the page cache).
//!
//! The walk hints the children it will open next ([`super::source::MetadataSource::prefetch`]);
//! [`ReadAhead::hint`] queues them in that order. Each worker takes the next queued block, reads
//! it (`pread` into an aligned buffer), computes its checksum with the btree
//! salt and files it as ready. [`ReadAhead::take`] hands a ready block to the walk together with
//! whether its checksum passed ([`NodeChecksum::Verified`]); a block whose checksum did not pass
//! is handed over [`NodeChecksum::Unchecked`], so the walk's own decode checks it and reports
//! the mismatch exactly as without read-ahead. A block a worker is reading is waited for; a
//! block still queued, or one whose read failed, is left to the caller to read itself (a failed
//! read then gives the caller its own error).
//!
//! Every node is checksummed before it is used: by a worker (and then trusted), or by the
//! walk's decode (once in the common case; twice for a block a worker found bad, or whose hint
//! was dropped while a worker read it). At most [`HELD_LIMIT`] blocks are queued or held (8 MiB,
//! plus up to one buffer per worker in flight and the free list they are recycled through); the
//! lists of hinted block numbers are trimmed at twice that; when hints that went
//! unused (the walk found the subtree shared at another depth) would exceed that, the oldest
//! hints are dropped. Dropping the pool stops and joins the workers, so no read outlives the
//! source (the live path releases its metadata snapshot only after that).

use super::checksum::{verify, BTREE_CSUM_XOR};
use super::source::{Block, NodeChecksum, METADATA_BLOCK_SIZE};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Most blocks queued or held at once (8 MiB): the hints of a few levels of full nodes.
pub const HELD_LIMIT: usize = 2048;

/// Stack of a worker thread: it only reads into heap buffers and computes a CRC.
const WORKER_STACK: usize = 64 * 1024;

/// A 4 KiB buffer aligned for `O_DIRECT`.
#[repr(C, align(4096))]
pub(crate) struct AlignedBlock(pub(crate) Block);

impl AlignedBlock {
    /// A zeroed block on the heap.
    pub(crate) fn boxed() -> Box<Self> {
        Box::new(AlignedBlock([0; METADATA_BLOCK_SIZE]))
    }
}

/// Where a hinted block is.
enum Slot {
    /// Waiting for a worker.
    Queued,
    /// A worker is reading it.
    Reading,
    /// A worker is reading it but the hint was dropped: the result is thrown away.
    Dropped,
    /// Read; `verified` says whether its btree checksum passed.
    Ready {
        block: Box<AlignedBlock>,
        verified: bool,
    },
}

#[derive(Default)]
struct State {
    slots: HashMap<u64, Slot>,
    /// Blocks for the workers, in hint order (entries no longer `Queued` are skipped).
    queue: VecDeque<u64>,
    /// Blocks in hint order, oldest first, for dropping unused hints.
    order: VecDeque<u64>,
    /// Buffers of blocks already taken, for the workers' next reads (allocating and freeing a
    /// block per node across threads costs more than the read on a fast machine).
    free: Vec<Box<AlignedBlock>>,
    /// Threads waiting in [`ReadAhead::take`] for a block being read.
    waiting: usize,
    shutdown: bool,
}

struct Shared {
    file: File,
    state: Mutex<State>,
    /// Signalled when blocks are queued (or at shutdown).
    work: Condvar,
    /// Signalled when a worker files a block someone waits for.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The worker pool of one source; see the module docs.
pub struct ReadAhead {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl ReadAhead {
    /// Start `threads` workers reading from `file` (a clone of the source's `O_DIRECT` handle;
    /// the workers read into aligned buffers).
    /// Threads that cannot be spawned are simply not there; with none, every hint stays queued
    /// and the caller reads everything itself.
    pub fn start(file: File, threads: usize) -> Self {
        let shared = Arc::new(Shared {
            file,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let workers = (0..threads)
            .filter_map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("lvmsync-ahead-{i}"))
                    .stack_size(WORKER_STACK)
                    .spawn(move || work(&shared))
                    .ok()
            })
            .collect();
        ReadAhead { shared, workers }
    }

    /// Queue `blocks` (in the order the walk will want them; the caller has dropped those past
    /// the source's end). Blocks already queued or held are not queued again.
    pub fn hint(&self, blocks: &[u64]) {
        let mut st = self.shared.lock();
        let mut queued = 0;
        for &b in blocks {
            if st.slots.contains_key(&b) {
                continue;
            }
            if !make_room(&mut st) {
                break;
            }
            st.slots.insert(b, Slot::Queued);
            st.queue.push_back(b);
            st.order.push_back(b);
            queued += 1;
        }
        // Blocks the walk took before a worker did stay in the queue until a worker passes
        // them; should the workers fall far behind (or none could be started), drop them.
        if st.queue.len() > 2 * HELD_LIMIT {
            let State { queue, slots, .. } = &mut *st;
            queue.retain(|b| matches!(slots.get(b), Some(Slot::Queued)));
        }
        // The same for the order list: `make_room` trims it only from the front, so one hint
        // that is never taken would otherwise keep every later (taken) hint in it.
        if st.order.len() > 2 * HELD_LIMIT {
            let State { order, slots, .. } = &mut *st;
            order.retain(|b| slots.contains_key(b));
        }
        drop(st);
        match queued {
            0 => {}
            1 => self.shared.work.notify_one(),
            _ => self.shared.work.notify_all(),
        }
    }

    /// Block `n` if a worker has read it (waiting while one is reading it), copied into `buf`,
    /// with whether its checksum passed; `None` if it was not hinted, is still queued (it is
    /// then dropped from the queue) or its read failed: the caller reads it itself.
    pub fn take(&self, n: u64, buf: &mut Block) -> Option<NodeChecksum> {
        let mut st = self.shared.lock();
        loop {
            match st.slots.get(&n) {
                None | Some(Slot::Dropped) => return None,
                Some(Slot::Queued) => {
                    st.slots.remove(&n);
                    return None;
                }
                Some(Slot::Reading) => {
                    st.waiting += 1;
                    st = self.shared.done.wait(st).unwrap_or_else(|p| p.into_inner());
                    st.waiting -= 1;
                }
                Some(Slot::Ready { .. }) => {
                    let Some(Slot::Ready { block, verified }) = st.slots.remove(&n) else {
                        unreachable!("matched Ready above");
                    };
                    buf.copy_from_slice(&block.0);
                    st.free.push(block);
                    drop(st);
                    return Some(if verified {
                        NodeChecksum::Verified
                    } else {
                        NodeChecksum::Unchecked
                    });
                }
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Drop the oldest hints until one more fits under [`HELD_LIMIT`]; `false` if none can go.
fn make_room(st: &mut State) -> bool {
    while st.slots.len() >= HELD_LIMIT {
        let Some(old) = st.order.pop_front() else {
            return false;
        };
        match st.slots.get_mut(&old) {
            Some(slot @ Slot::Reading) => *slot = Slot::Dropped,
            Some(Slot::Dropped) | None => {}
            Some(_) => {
                if let Some(Slot::Ready { block, .. }) = st.slots.remove(&old) {
                    st.free.push(block);
                }
            }
        }
    }
    // Forget hints the walk has already taken, so the order list stays as short as the slots.
    while st
        .order
        .front()
        .is_some_and(|front| !st.slots.contains_key(front))
    {
        st.order.pop_front();
    }
    true
}

/// A worker: read and checksum queued blocks until shutdown.
fn work(shared: &Shared) {
    loop {
        let (n, mut block) = {
            let mut st = shared.lock();
            loop {
                if st.shutdown {
                    return;
                }
                match st.queue.pop_front() {
                    Some(n) => {
                        if let Some(slot @ Slot::Queued) = st.slots.get_mut(&n) {
                            *slot = Slot::Reading;
                            break (n, st.free.pop().unwrap_or_else(AlignedBlock::boxed));
                        }
                    }
                    None => st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner()),
                }
            }
        };
        let read = shared
            .file
            .read_exact_at(&mut block.0, n * METADATA_BLOCK_SIZE as u64);
        let verified = read.is_ok() && verify(&block.0, BTREE_CSUM_XOR).is_ok();
        let mut st = shared.lock();
        match st.slots.get_mut(&n) {
            Some(slot @ Slot::Reading) if read.is_ok() => *slot = Slot::Ready { block, verified },
            _ => {
                st.slots.remove(&n);
                st.free.push(block);
            }
        }
        let wake = st.waiting > 0;
        drop(st);
        if wake {
            shared.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One hint that is never taken must not keep every later hint's number in the order
    /// list: with no workers every hint stays queued, and the walk takes (drops) each but the
    /// first. Without the trim in `hint`, `order` grows by one per hint (20,000 here).
    #[test]
    fn an_unused_hint_does_not_let_the_order_list_grow() {
        let file = tempfile::tempfile().unwrap();
        let ahead = ReadAhead::start(file, 0);
        let mut buf = [0u8; METADATA_BLOCK_SIZE];
        ahead.hint(&[0]);
        for n in 1..20_000u64 {
            ahead.hint(&[n]);
            assert!(ahead.take(n, &mut buf).is_none());
        }
        let st = ahead.shared.lock();
        assert!(st.order.len() <= 2 * HELD_LIMIT + 1, "{}", st.order.len());
        assert!(st.queue.len() <= 2 * HELD_LIMIT + 1, "{}", st.queue.len());
        assert!(st.slots.contains_key(&0));
    }
}
