//! Sub-block refinement of a snapshot delta: drop the 4 KiB units of changed extents whose
//! bytes equal the base's, before anything is encoded.
//!
//! Snapshot metadata tracks changes per thin data block (64 KiB by LVM default, up to 1 GiB)
//! or per COW chunk (4 KiB to 512 KiB), so a 4 KiB write makes a whole block "changed". When
//! the older snapshot is readable, [`refine`] reads both snapshots' bytes of every `changed`
//! and `added` extent and keeps only the runs of [`UNIT`]s that differ, or that reach past the
//! older snapshot's end. `removed` extents pass through untouched. The destination holds the
//! base state (the receiver checks the base identity before writing), so a unit equal to the
//! base needs no record at all: no read by the encoder, no hash, no compression, no stream
//! bytes, no undo journal, no write.
//!
//! An `added` extent (unmapped in the older thin snapshot) is compared with the older
//! snapshot's bytes as read, not with zeroes: a thin device with an *external origin* reads
//! that origin's bytes where it is unmapped, and those are what the destination holds. On an
//! ordinary thin device the read of an unmapped block is the kernel filling zeroes, no disk
//! I/O. And a unit at or past the older snapshot's end is always kept, zero or not: a grown
//! destination (`receive --grow`, `lvextend`) holds whatever bytes were on its disk there.
//!
//! Why a pass before the encoder rather than inside it: the stream header declares the exact
//! `touched_bytes` before the first record and the reader checks the trailer against it, so
//! the refined extents must be known up front. The pass returns an ordinary [`ChangeSet`];
//! the encoder, checkpoints, resume (a resumed send refines again and gets the same set: both
//! snapshots are frozen) and progress are unchanged. Its price is a second read of the units
//! that differ (from the page cache for deltas that fit in memory).
//!
//! The pass runs on `workers` threads, each taking batches of about [`BATCH`] bytes of
//! extents in turn (hinting the whole batch to the kernel first, so a cold device has many
//! reads in flight) and reading at most [`READ`] bytes of each snapshot at a time, so memory
//! is `workers × 2 × READ` plus the refined extent list.

use crate::changeset::{ChangeSet, Extent, ExtentKind};
use crate::error::{Error, Result};
use crate::stream::prefetch::willneed;
use crate::units::Bytes;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The compare unit: 4 KiB, the page and file-system block size, the smallest write that
/// matters in practice (sector writes inside it are rare). Units sit at multiples of `UNIT`
/// on the device, the last one may be short.
pub const UNIT: Bytes = Bytes(4096);

/// Bytes of extents a worker takes at a time.
const BATCH: u64 = 4 << 20;

/// Bytes read from each snapshot at once.
const READ: u64 = 1 << 20;

/// What a refinement found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refined {
    /// The changes to send: `removed` extents as they were, `changed` and `added` ones cut
    /// down to the units that differ from the base.
    pub changes: ChangeSet,
    /// Bytes of `changed` and `added` extents compared.
    pub compared: Bytes,
    /// Bytes of those equal to the base, which are dropped.
    pub unchanged: Bytes,
}

/// A snapshot opened for reading, with its path for errors and its length.
struct Snapshot<'a> {
    file: File,
    path: &'a Path,
    len: u64,
}

impl<'a> Snapshot<'a> {
    fn open(path: &'a Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = Bytes::len_of(&file).map_err(|e| Error::io(path, e))?.0;
        Ok(Snapshot { file, path, len })
    }

    /// Read `buf.len()` bytes at `offset`; bytes past the end are left out (the count read
    /// is returned), a failed read is an error naming the device.
    fn read_upto(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let n = (self.len.saturating_sub(offset) as usize).min(buf.len());
        self.file
            .read_exact_at(&mut buf[..n], offset)
            .map_err(|e| Error::io(self.path, e))?;
        Ok(n)
    }
}

/// Cut the `changed` and `added` extents of `changes` down to the [`UNIT`]s whose bytes in
/// `new` (the newer snapshot, the one sent) differ from `base` (the older one, which the
/// destination holds): see the module doc. `workers` threads compare (at least one).
pub fn refine(changes: &ChangeSet, new: &Path, base: &Path, workers: usize) -> Result<Refined> {
    let new = Snapshot::open(new)?;
    let base = Snapshot::open(base)?;
    let (batches, removed) = batches(changes);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut found = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.clamp(1, batches.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    let mut bufs = (vec![0u8; READ as usize], vec![0u8; READ as usize]);
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(batch) = batches.get(i) else { break };
                        hint(batch, &new, &base);
                        let mut kept = Vec::new();
                        for e in batch {
                            if let Err(err) = differing(e, &new, &base, &mut bufs, &mut kept) {
                                failed.store(true, Ordering::Relaxed);
                                return Err(err);
                            }
                        }
                        done.push((i, kept));
                    }
                    Ok(done)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().expect("refine workers do not panic")?);
        }
        Ok::<_, Error>(all)
    })?;
    found.sort_unstable_by_key(|(i, _)| *i);
    let compared = changes.changed_bytes().0 - removed.iter().map(|e| e.length.0).sum::<u64>();
    let kept = found.into_iter().flat_map(|(_, kept)| kept);
    let refined = ChangeSet::from_extents(changes.block_size(), kept.chain(removed))?;
    let sent: u64 = refined
        .extents()
        .iter()
        .filter(|e| e.kind != ExtentKind::Removed)
        .map(|e| e.length.0)
        .sum();
    Ok(Refined {
        changes: refined,
        compared: Bytes(compared),
        unchanged: Bytes(compared - sent),
    })
}

/// The `changed`/`added` extents of `changes` in batches of about [`BATCH`] bytes (a longer
/// extent is cut), in order; and the `removed` extents.
fn batches(changes: &ChangeSet) -> (Vec<Vec<Extent>>, Vec<Extent>) {
    let (mut batches, mut removed) = (Vec::new(), Vec::new());
    let (mut batch, mut filled) = (Vec::new(), 0u64);
    for e in changes.extents() {
        if e.kind == ExtentKind::Removed {
            removed.push(*e);
            continue;
        }
        let (mut pos, end) = (e.offset.0, e.offset.0 + e.length.0);
        while pos < end {
            let n = (end - pos).min(BATCH - filled);
            batch.push(Extent::new(pos, n, e.kind));
            (pos, filled) = (pos + n, filled + n);
            if filled == BATCH {
                batches.push(std::mem::take(&mut batch));
                filled = 0;
            }
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    (batches, removed)
}

/// Ask the kernel to start reading every extent of `batch` in both snapshots, so the scattered
/// blocks of a cold device are read many at a time rather than one round trip each (as the
/// encoder does, `prefetch.rs`). A batch is smaller than the encoder's hint window, so it is
/// hinted whole.
fn hint(batch: &[Extent], new: &Snapshot<'_>, base: &Snapshot<'_>) {
    for e in batch {
        willneed(&new.file, e.offset.0, e.length.0);
        willneed(&base.file, e.offset.0, e.length.0);
    }
}

/// Append to `kept` the runs of units of extent `e` (`changed` or `added`) whose bytes in `new`
/// and `base` differ, or that reach past the base's end.
fn differing(
    e: &Extent,
    new: &Snapshot<'_>,
    base: &Snapshot<'_>,
    (nbuf, obuf): &mut (Vec<u8>, Vec<u8>),
    kept: &mut Vec<Extent>,
) -> Result<()> {
    let (mut pos, end) = (e.offset.0, e.offset.0 + e.length.0);
    while pos < end {
        let n = (end - pos).min(READ) as usize;
        let fresh = &mut nbuf[..n];
        new.file
            .read_exact_at(fresh, pos)
            .map_err(|err| Error::io(new.path, err))?;
        let old_len = base.read_upto(&mut obuf[..n], pos)?;
        let mut at = 0;
        while at < n {
            let unit_end = ((pos + at as u64) / UNIT.0 + 1) * UNIT.0;
            let to = ((unit_end - pos) as usize).min(n);
            if to > old_len || fresh[at..to] != obuf[at..to] {
                let from = pos + at as u64;
                match kept.last_mut() {
                    Some(k) if k.end() == Some(from) && k.kind == e.kind => {
                        k.length.0 += (to - at) as u64
                    }
                    _ => kept.push(Extent::new(from, (to - at) as u64, e.kind)),
                }
            }
            at = to;
        }
        pos += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
