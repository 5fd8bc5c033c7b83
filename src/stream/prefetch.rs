//! Read-ahead hints for the sender's reader: the extents it is about to read, announced to
//! the kernel (`POSIX_FADV_WILLNEED`) a bounded window ahead of the read position.
//!
//! The reader reads the changed extents one after another with plain `pread`s. For small
//! scattered extents (4 KiB COW chunks, 64 KiB thin blocks) each read is a synchronous round
//! trip to the device with nothing else in flight, so the device idles between them. A
//! `WILLNEED` hint starts the kernel's asynchronous read of a range into the page cache and
//! returns at once; hinting the next extents before reading the current one keeps many reads
//! in flight from one thread (no worker threads, whose cross-CPU wake-ups cost more than they
//! save on a small machine). The window is bounded in bytes so the hinted pages cannot push
//! each other out of the cache before they are read. Hints are advice: a failed or ignored
//! one only costs speed.

use crate::changeset::{Extent, ExtentKind};
use std::fs::File;

/// How far past the read position extents are hinted, in bytes.
const WINDOW: u64 = 8 << 20;

/// A cursor over the extents still to be hinted, ahead of the reader.
pub(super) struct Prefetch<'a> {
    extents: &'a [Extent],
    /// Index of the first extent not wholly hinted.
    next: usize,
    /// Bytes of `extents[next]` before this offset are hinted.
    hinted_to: u64,
}

impl<'a> Prefetch<'a> {
    /// Hints for reads of `extents` (sorted, as a `ChangeSet` keeps them).
    pub(super) fn new(extents: &'a [Extent]) -> Self {
        Prefetch {
            extents,
            next: 0,
            hinted_to: 0,
        }
    }

    /// The reader is about to read at `pos`: pass every range to read in
    /// `[pos, pos + WINDOW)` that was not passed yet to `advise(offset, len)` ([`willneed`]
    /// outside tests). Removed extents are never read, so never hinted.
    pub(super) fn before_read(&mut self, pos: u64, mut advise: impl FnMut(u64, u64)) {
        let limit = pos.saturating_add(WINDOW);
        while let Some(e) = self.extents.get(self.next) {
            let end = e.end().unwrap_or(u64::MAX);
            let start = e.offset.0.max(self.hinted_to).max(pos);
            if start >= limit {
                return;
            }
            let stop = end.min(limit);
            if e.kind != ExtentKind::Removed && start < stop {
                advise(start, stop - start);
            }
            if stop < end {
                self.hinted_to = stop;
                return;
            }
            self.next += 1;
        }
    }
}

/// Ask the kernel to start reading `[offset, offset + len)` of `file` into the page cache.
pub(super) fn willneed(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    let advice = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED;
    let _ = nix::fcntl::posix_fadvise(file, offset, len, advice);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_stay_within_the_window_and_skip_removed_extents() {
        let mib = 1u64 << 20;
        let ext = [
            Extent::new(0, 4096, ExtentKind::Changed),
            Extent::new(mib, 4096, ExtentKind::Removed),
            Extent::new(2 * mib, 4096, ExtentKind::Added),
            Extent::new(20 * mib, 20 * mib, ExtentKind::Changed),
        ];
        let mut p = Prefetch::new(&ext);
        let mut hinted = Vec::new();
        for pos in [0, 4096, 2 * mib, 20 * mib, 21 * mib, 30 * mib, 39 * mib] {
            p.before_read(pos, |o, l| hinted.push((pos, o, o + l)));
        }
        assert_eq!(
            hinted,
            vec![
                // At 0 the window reaches 8 MiB: the first and third extents, not the removed.
                (0, 0, 4096),
                (0, 2 * mib, 2 * mib + 4096),
                // Nothing new until the window reaches the big extent; then up to 8 MiB ahead
                // of the reader, each byte at most once.
                (20 * mib, 20 * mib, 28 * mib),
                (21 * mib, 28 * mib, 29 * mib),
                // What lies behind the read position is not hinted any more.
                (30 * mib, 30 * mib, 38 * mib),
                (39 * mib, 39 * mib, 40 * mib),
            ]
        );
    }
}
