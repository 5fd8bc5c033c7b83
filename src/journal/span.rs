//! Which of the destination's old bytes an apply journals.
//!
//! Rolling back restores the state the delta applies to. An incremental stream's base state
//! is the first `base_size` bytes (its fingerprint is taken over exactly those), so bytes past
//! them — a volume grown with `lvextend` before the receive holds junk there — are not part of
//! it and need not be journaled: recovery restores the base's bytes, and bytes past the base's
//! size keep whatever the interrupted apply wrote. That holds only when the destination was
//! checked to hold that base and nothing older is to be restored, so everything up to the
//! destination's old size is journaled ([`UndoSpan::whole`]) for full syncs (no base), streams
//! of older versions (which record no base size), a `--force`d apply (the destination's
//! state past `base_size` was never checked: it may be a real, larger state), a `--snapback`
//! apply (an older image of the chain may restore a larger state through this one: a volume
//! shrunk then grown again) and a resumed apply (journaling more than the interrupted apply
//! did is always safe, less never is).

use crate::stream::Header;

/// The journaled part of the destination, for one apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UndoSpan {
    /// Old bytes at or past this offset get no journal entry (`size_before`, capped at an
    /// incremental stream's `base_size`).
    pub end: u64,
    /// The destination's size before the apply. A regular file grown past it reads zeroes
    /// there (recovery cuts it back); bytes from `end` up to it hold what the destination had.
    pub size_before: u64,
}

impl UndoSpan {
    /// Every old byte up to `size_before`, the destination's size before the apply (as
    /// recorded in the journal head).
    pub fn whole(size_before: u64) -> UndoSpan {
        UndoSpan {
            end: size_before,
            size_before,
        }
    }

    /// The span of an apply of the stream `h`, whose base the destination was checked to
    /// hold, to a destination of `size_before` bytes, keeping no snapback image: capped at
    /// an incremental stream's base size (see the module doc for when not to use this).
    pub fn capped(h: &Header, size_before: u64) -> UndoSpan {
        let end = match h.base_size.0 {
            base if !h.is_full() && base > 0 => size_before.min(base),
            _ => size_before,
        };
        UndoSpan { end, size_before }
    }

    /// Whether `[offset, offset + len)` reaches bytes that hold the destination's old contents
    /// but are not journaled (between `end` and `size_before`): a write there can never be
    /// skipped, whatever it would write.
    pub fn unjournaled_old(&self, offset: u64, len: u64) -> bool {
        offset.max(self.end) < (offset + len).min(self.size_before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Fingerprint;
    use crate::units::Bytes;

    fn header(base_size: u64, full: bool) -> Header {
        Header {
            source: String::new(),
            source_uuid: String::new(),
            device_size: Bytes(300),
            base_size: Bytes(base_size),
            block_size: Bytes(4096),
            base: if full {
                Fingerprint::NONE
            } else {
                Fingerprint([7; 32])
            },
            target: Fingerprint([8; 32]),
            created_unix: 0,
            touched_bytes: Bytes(0),
        }
    }

    #[test]
    fn incremental_stream_is_capped_at_the_base_size() {
        let s = UndoSpan::capped(&header(100, false), 300);
        assert_eq!(
            s,
            UndoSpan {
                end: 100,
                size_before: 300
            }
        );
        // A destination smaller than the base: its own size.
        assert_eq!(UndoSpan::capped(&header(100, false), 60).end, 60);
    }

    #[test]
    fn full_and_older_streams_are_not_capped() {
        assert_eq!(UndoSpan::capped(&header(0, true), 300).end, 300);
        assert_eq!(UndoSpan::capped(&header(100, true), 300).end, 300);
        // An older stream version decodes base_size 0.
        assert_eq!(UndoSpan::capped(&header(0, false), 300).end, 300);
    }

    #[test]
    fn unjournaled_old_bytes_lie_between_end_and_size_before() {
        let s = UndoSpan {
            end: 100,
            size_before: 300,
        };
        assert!(!s.unjournaled_old(0, 100));
        assert!(s.unjournaled_old(0, 101));
        assert!(s.unjournaled_old(299, 10));
        assert!(!s.unjournaled_old(300, 10));
        let grown_file = UndoSpan {
            end: 300,
            size_before: 300,
        };
        assert!(!grown_file.unjournaled_old(250, 100));
        assert!(!grown_file.unjournaled_old(300, 100));
    }
}
