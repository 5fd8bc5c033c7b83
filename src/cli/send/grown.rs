//! How a live send's changes are shaped beyond the snapshot diff: the part of a volume that grew
//! since the older snapshot, the holes of a full send, and a source with an external origin.

use super::clip_to;
use lvmsync::dm::{ProbeReport, Target};
use lvmsync::{ChangeSet, Extent, ExtentKind};

/// `mapped` plus `Removed` extents over every gap between `from` and `size`.
pub(super) fn with_holes_discarded(
    mapped: &ChangeSet,
    from: u64,
    size: u64,
) -> anyhow::Result<ChangeSet> {
    let mut all = mapped.extents().to_vec();
    let mut pos = from;
    for e in mapped.extents() {
        let end = e.offset.0 + e.length.0;
        if end > pos {
            all.push(Extent::new(
                pos,
                e.offset.0.saturating_sub(pos),
                ExtentKind::Removed,
            ));
            pos = end;
        }
    }
    all.push(Extent::new(
        pos,
        size.saturating_sub(pos),
        ExtentKind::Removed,
    ));
    Ok(ChangeSet::from_extents(mapped.block_size(), all)?)
}

/// `changes` of a thin volume that grew from `base_size` to `size` since the older snapshot,
/// with its grown part taken from `mapped`, what the newer snapshot maps there: the
/// destination is grown too (`lvextend`) and holds whatever was on its disk there, so every
/// byte of it must be written. Mapped blocks are sent as data (`added`: the older snapshot
/// did not reach there) and the holes as discards (they read zeroes). The diff alone is not
/// enough there: a block the older snapshot maps past its end (a volume shrunk without
/// unmapping its tail) and the newer maps identically is in neither side of the diff, yet the
/// newer reads its bytes. Below `base_size`, the diff.
pub(super) fn with_grown_thin_tail(
    changes: &ChangeSet,
    mapped: &ChangeSet,
    base_size: u64,
    size: u64,
) -> anyhow::Result<ChangeSet> {
    let grown = clip_to(&mapped.clipped(base_size)?, size)?;
    let tail = with_holes_discarded(&grown, base_size, size)?;
    let below = clip_to(changes, base_size)?;
    Ok(ChangeSet::from_extents(
        changes.block_size(),
        below.extents().iter().chain(tail.extents()).copied(),
    )?)
}

/// `changes` of a classic snapshot whose volume grew from `base_size` to `size`: the older
/// snapshot's store covers only its own size, so the whole grown part is sent as data (the
/// grown destination holds whatever was on its disk there).
pub(super) fn with_grown_tail_as_data(
    changes: &ChangeSet,
    base_size: u64,
    size: u64,
) -> anyhow::Result<ChangeSet> {
    let tail = Extent::new(base_size, size - base_size, ExtentKind::Changed);
    let below = clip_to(changes, base_size)?;
    Ok(ChangeSet::from_extents(
        changes.block_size(),
        below.extents().iter().copied().chain([tail]),
    )?)
}

/// Whether thin device `p` has an external origin (`thin <pool> <id> <origin>` in its
/// table): its unmapped blocks read that origin's bytes, not zeroes.
pub(super) fn external_origin(p: &ProbeReport) -> bool {
    p.table.iter().any(|l| {
        matches!(
            l.target,
            Target::Thin {
                external_origin: Some(_),
                ..
            }
        )
    })
}

/// `changes` with every `removed` extent sent as data: for a source whose unmapped blocks
/// read an external origin's bytes, a discard (zeroes at the destination) would be wrong.
pub(super) fn removed_as_data(changes: &ChangeSet) -> anyhow::Result<ChangeSet> {
    let kept = changes.extents().iter().map(|e| match e.kind {
        ExtentKind::Removed => Extent::new(e.offset.0, e.length.0, ExtentKind::Changed),
        _ => *e,
    });
    Ok(ChangeSet::from_extents(changes.block_size(), kept)?)
}
