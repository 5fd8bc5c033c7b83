//! The one `ChangeSet` type.
//!
//! Every change source (COW exception store, thin-device pair, block-hash compare) produces a
//! [`ChangeSet`], and every sink (text/JSON listing, delta stream, NBD mirror, FUSE view)
//! consumes one. It is a sorted list of non-overlapping, byte-addressed extents where
//! neighbours of the same kind are merged, so sinks never see two records for one range.

use crate::error::{Error, Result};
use crate::units::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What happened to an extent between the older and the newer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtentKind {
    /// Present in both states with different data: send the new data.
    Changed,
    /// Present only in the newer state (e.g. newly mapped thin blocks): send the new data.
    Added,
    /// Present only in the older state (e.g. unmapped/discarded): the receiver discards or zeroes it.
    Removed,
}

impl ExtentKind {
    /// The lowercase name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtentKind::Changed => "changed",
            ExtentKind::Added => "added",
            ExtentKind::Removed => "removed",
        }
    }
}

impl std::fmt::Display for ExtentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A byte range of the device and what happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Extent {
    /// Byte offset from the start of the device.
    pub offset: Bytes,
    /// Length in bytes (never zero inside a [`ChangeSet`]).
    pub length: Bytes,
    /// What happened to this range.
    pub kind: ExtentKind,
}

impl Extent {
    /// Build an extent from raw byte numbers.
    pub fn new(offset: u64, length: u64, kind: ExtentKind) -> Self {
        Extent {
            offset: Bytes(offset),
            length: Bytes(length),
            kind,
        }
    }

    /// The first byte after the extent, or `None` if it would overflow `u64`.
    pub fn end(&self) -> Option<u64> {
        self.offset.0.checked_add(self.length.0)
    }
}

/// A sorted, merged, non-overlapping set of changed extents at a given block granularity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    block_size: Bytes,
    extents: Vec<Extent>,
}

impl ChangeSet {
    /// An empty change set (nothing changed).
    pub fn empty(block_size: Bytes) -> Self {
        ChangeSet {
            block_size,
            extents: Vec::new(),
        }
    }

    /// Build a change set from extents in any order.
    ///
    /// Zero-length extents are dropped, adjacent extents of the same kind are merged, and
    /// overlapping extents (which no correct source produces) are an error.
    pub fn from_extents(
        block_size: Bytes,
        extents: impl IntoIterator<Item = Extent>,
    ) -> Result<Self> {
        let mut builder = ChangeSetBuilder::new(block_size);
        for e in extents {
            builder.push(e);
        }
        builder.build()
    }

    /// A change set from extents already in final form: sorted, non-empty, non-overlapping,
    /// within 64 bits, and merged (no two touching neighbours of one kind). For a source that
    /// builds its list that way (the COW store's, up to millions of extents), this takes the
    /// list as it is, without another pass over it; the form is checked in debug builds.
    pub(crate) fn from_merged(block_size: Bytes, extents: Vec<Extent>) -> Self {
        debug_assert!(extents.iter().all(|e| e.length.0 > 0 && e.end().is_some()));
        debug_assert!(extents.windows(2).all(|w| {
            let end = w[0].offset.0 + w[0].length.0;
            w[1].offset.0 > end || (w[1].offset.0 == end && w[1].kind != w[0].kind)
        }));
        ChangeSet {
            block_size,
            extents,
        }
    }

    /// The granularity the source tracks changes at (COW chunk, thin data block, hash block).
    pub fn block_size(&self) -> Bytes {
        self.block_size
    }

    /// The extents, sorted by offset.
    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        self.extents.len()
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// Total bytes covered by all extents, of every kind.
    pub fn changed_bytes(&self) -> Bytes {
        Bytes(self.extents.iter().map(|e| e.length.0).sum())
    }

    /// The part of this change set at or after byte `from` (an extent straddling `from` is
    /// cut there): what is left to send when resuming a transfer at `from`.
    pub fn clipped(&self, from: u64) -> Result<ChangeSet> {
        let rest = self.extents.iter().filter_map(|e| {
            let end = e.offset.0 + e.length.0;
            (end > from)
                .then(|| Extent::new(e.offset.0.max(from), end - e.offset.0.max(from), e.kind))
        });
        ChangeSet::from_extents(self.block_size, rest)
    }
}

impl Serialize for ChangeSet {
    /// `{"block_size", "extents": [{"offset","length","kind"}], "changed_bytes", "extents_count"}`.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ChangeSet", 4)?;
        st.serialize_field("block_size", &self.block_size)?;
        st.serialize_field("extents", &self.extents)?;
        st.serialize_field("changed_bytes", &self.changed_bytes())?;
        st.serialize_field("extents_count", &self.extents.len())?;
        st.end()
    }
}

/// The part of the listing that defines a change set; the summary fields are derived.
#[derive(Deserialize)]
struct Listing {
    block_size: Bytes,
    extents: Vec<Extent>,
}

impl<'de> Deserialize<'de> for ChangeSet {
    /// Read back the JSON listing `lvmsync diff --json` prints (summary fields ignored), with
    /// the same validation as [`ChangeSet::from_extents`], so a saved listing can be consumed
    /// without a parser of its own.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let listing = Listing::deserialize(d)?;
        ChangeSet::from_extents(listing.block_size, listing.extents)
            .map_err(serde::de::Error::custom)
    }
}

/// Collects extents one at a time, merging as it goes, so a source that emits extents in
/// order (all of ours do) needs memory only for the merged result.
#[derive(Debug)]
pub struct ChangeSetBuilder {
    block_size: Bytes,
    extents: Vec<Extent>,
    sorted: bool,
}

impl ChangeSetBuilder {
    /// A builder for a change set at `block_size` granularity.
    pub fn new(block_size: Bytes) -> Self {
        ChangeSetBuilder {
            block_size,
            extents: Vec::new(),
            sorted: true,
        }
    }

    /// Add one extent; zero-length extents are ignored.
    pub fn push(&mut self, e: Extent) {
        if e.length.0 == 0 {
            return;
        }
        if let Some(last) = self.extents.last_mut() {
            if last.kind == e.kind && last.end() == Some(e.offset.0) && e.end().is_some() {
                last.length.0 += e.length.0;
                return;
            }
            if e.offset < last.offset {
                self.sorted = false;
            }
        }
        self.extents.push(e);
    }

    /// Sort (if needed), merge and check the extents.
    pub fn build(mut self) -> Result<ChangeSet> {
        if !self.sorted {
            self.extents.sort_by_key(|e| e.offset);
        }
        let mut out: Vec<Extent> = Vec::with_capacity(self.extents.len());
        for e in self.extents {
            let end = e.end().ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "extent at {} of length {} runs past the end of a 64-bit device",
                    e.offset, e.length
                ))
            })?;
            if let Some(last) = out.last_mut() {
                // `last.end()` was checked when it was pushed.
                let last_end = last.offset.0 + last.length.0;
                if e.offset.0 < last_end {
                    return Err(Error::InvalidArgument(format!(
                        "extents overlap: {}+{} ({}) and {}+{} ({})",
                        last.offset, last.length, last.kind, e.offset, e.length, e.kind
                    )));
                }
                if e.offset.0 == last_end && e.kind == last.kind {
                    last.length.0 = end - last.offset.0;
                    continue;
                }
            }
            out.push(e);
        }
        Ok(ChangeSet {
            block_size: self.block_size,
            extents: out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExtentKind::*;

    #[test]
    fn merges_adjacent_same_kind_and_sorts() {
        let cs = ChangeSet::from_extents(
            Bytes(4096),
            [
                Extent::new(8192, 4096, Changed),
                Extent::new(0, 4096, Changed),
                Extent::new(4096, 4096, Changed),
                Extent::new(12288, 4096, Added),
                Extent::new(20480, 0, Removed),
            ],
        )
        .unwrap();
        assert_eq!(
            cs.extents(),
            &[
                Extent::new(0, 12288, Changed),
                Extent::new(12288, 4096, Added)
            ]
        );
        assert_eq!(cs.changed_bytes(), Bytes(16384));
    }

    #[test]
    fn rejects_overlap_and_overflow() {
        let overlap = ChangeSet::from_extents(
            Bytes(512),
            [
                Extent::new(0, 1024, Changed),
                Extent::new(512, 512, Removed),
            ],
        );
        assert!(matches!(overlap, Err(Error::InvalidArgument(_))));
        let overflow = ChangeSet::from_extents(Bytes(512), [Extent::new(u64::MAX, 2, Added)]);
        assert!(matches!(overflow, Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn json_shape() {
        let cs =
            ChangeSet::from_extents(Bytes(65536), [Extent::new(65536, 65536, Removed)]).unwrap();
        let v = serde_json::to_value(&cs).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "block_size": 65536,
                "extents": [{"offset": 65536, "length": 65536, "kind": "removed"}],
                "changed_bytes": 65536,
                "extents_count": 1
            })
        );
        let back: ChangeSet = serde_json::from_value(v).unwrap();
        assert_eq!(back, cs);
        let overlapping = serde_json::json!({"block_size": 512, "extents": [
            {"offset": 0, "length": 1024, "kind": "changed"},
            {"offset": 512, "length": 512, "kind": "added"}]});
        assert!(serde_json::from_value::<ChangeSet>(overlapping).is_err());
    }
}
