//! The journaled receiver: verify a stream record by record and commit it atomically.
//!
//! Choice (see `docs/stream-format.md`): each record is fully verified (CRC, bounds, order,
//! blake3 of the plain bytes) before its bytes may reach the destination, and the old
//! contents of every range are made durable in the undo journal before it is overwritten.
//! If anything fails later — a truncated stream, a corrupt record, a trailer whose root hash
//! does not match — the journal is rolled back, so the destination ends byte-identical to
//! what it was. `lvmsync apply` of a delta *file* additionally verifies the whole file before
//! starting ([`apply_file`], which starts journaling the old bytes while it verifies), so a
//! bad file writes nothing at all.

use super::dest::Destination;
use super::format::JournalHead;
use super::pipeline::JournalPlan;
use super::preflight::{check_base, check_journal_space, dest_err, journal_need};
use super::prepass::{journal_ahead, verify, Ahead, Covered};
use super::recover::{recover, Recovery};
use super::span::UndoSpan;
use super::state::{now_unix, DestPaths, DestState};
use super::undo::{retire, UndoJournal};
use crate::error::{Error, Result};
use crate::stream::record::Checkpoint;
use crate::stream::{Header, Item, StreamReader};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Directory of journals and state files.
    pub state_dir: PathBuf,
    /// Apply even if the destination's state is not the delta's base.
    pub force: bool,
    /// Grow a too-small destination file to the stream's device size.
    pub grow: bool,
    /// Verify and plan only; write nothing.
    pub dry_run: bool,
    /// Benchmark only: write in place with no undo journal (not crash-safe).
    pub unsafe_no_journal: bool,
    /// Keep the committed undo journal in this directory as a snapback image.
    pub snapback: Option<PathBuf>,
    /// Make the destination durable at each stream checkpoint and, if the stream is cut,
    /// keep the verified part (journaled) for `resume` instead of rolling it back.
    pub resumable: bool,
    /// Continue a kept partial apply with a continuation stream (`send --resume`).
    pub resume: bool,
    /// Network receivers: resume if the stream turns out to be a continuation, otherwise roll
    /// a kept partial apply back and apply the stream from the start.
    pub resume_if_continuation: bool,
}

impl ApplyOptions {
    /// A plain journaled apply with its journal and state in `state_dir`: the base checked,
    /// no growing, no snapback, not resumable. Callers set the fields they need on top.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        ApplyOptions {
            state_dir: state_dir.into(),
            force: false,
            grow: false,
            dry_run: false,
            unsafe_no_journal: false,
            snapback: None,
            resumable: false,
            resume: false,
            resume_if_continuation: false,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// What recovery found before starting.
    pub recovery: Recovery,
    /// The stream header.
    pub header: Header,
    /// Data records and their plain bytes.
    pub data_records: u64,
    /// Plain bytes of data records.
    pub data_bytes: u64,
    /// Bytes zeroed by zero and discard records.
    pub zeroed_bytes: u64,
    /// True if nothing was written (dry run).
    pub dry_run: bool,
}

/// Apply the stream from `input` (named `name` in errors) to `dest`, verifying each record
/// before it is written and rolling back if the stream turns out bad.
pub fn apply_stream(
    input: impl Read + Send,
    name: &str,
    dest: &Path,
    opts: &ApplyOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ApplyReport> {
    // Claim the destination before creating anything (state directory, lock, journal): a
    // mounted or otherwise busy device is refused with nothing written, and the claim held
    // to the end keeps anyone from mounting it mid-apply. `None`: a file not created yet.
    let held = Destination::claim(dest)?;
    apply_inner(
        input,
        None::<std::io::Empty>,
        name,
        dest,
        held.as_ref(),
        opts,
        progress,
    )
}

/// [`apply_stream`] into `dest`, which the caller has claimed ([`Destination::claim`]) and
/// holds across more than this apply: a command that prepares its stream (spools a rollback
/// or repair) or applies several keeps the device claimed throughout, so nobody can mount it
/// between the steps.
pub fn apply_stream_held(
    input: impl Read + Send,
    name: &str,
    dest: &Destination,
    opts: &ApplyOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ApplyReport> {
    let path = dest.path();
    apply_inner(
        input,
        None::<std::io::Empty>,
        name,
        path,
        Some(dest),
        opts,
        progress,
    )
}

/// Apply the delta file `delta` to `dest`, verifying the whole file before writing anything
/// (so a bad file writes nothing) and journaling the old bytes from while it verifies on into
/// the applying pass (each batch is written once its old bytes are durable).
pub fn apply_file(
    delta: &Path,
    dest: &Path,
    opts: &ApplyOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ApplyReport> {
    let open = || -> Result<BufReader<File>> {
        let f = File::open(delta).map_err(|e| Error::io(delta, e))?;
        Ok(BufReader::with_capacity(1 << 20, f))
    };
    let name = delta.display().to_string();
    // Claimed before anything is created, and held to the end, as by [`apply_stream`].
    let held = Destination::claim(dest)?;
    apply_inner(
        open()?,
        Some(open()?),
        &name,
        dest,
        held.as_ref(),
        opts,
        progress,
    )
}

/// [`apply_stream`] into `dest`, claimed by the caller as `held` (`None`: a file not created
/// yet), with `prepass` (the same stream again) verified in full first.
fn apply_inner<R: Read + Send, P: Read + Send>(
    input: R,
    prepass: Option<P>,
    name: &str,
    dest: &Path,
    held: Option<&Destination>,
    opts: &ApplyOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ApplyReport> {
    let paths = DestPaths::new(&opts.state_dir, dest)?;
    let _lock = paths.lock()?;
    let mut reader = StreamReader::open(input, name)?;
    let h = reader.header().clone();
    let mut first = None;
    let resume = opts.resume
        || (opts.resume_if_continuation && !opts.dry_run && {
            first = reader.next_item()?;
            matches!(first, Some(Item::Resume(_)))
        });
    let recovery = if opts.dry_run || resume {
        Recovery::Nothing
    } else {
        recover(&paths, held)?
    };
    if held.is_none() && !h.is_full() {
        return Err(dest_err(
            dest,
            "does not exist; run a full sync first".into(),
        ));
    }
    let size_before = match held {
        Some(d) => d.size()?,
        None => 0,
    };
    if held.is_some() && size_before < h.device_size.0 && !opts.grow {
        return Err(dest_err(
            dest,
            format!(
                "is {size_before} bytes but the stream's device is {} bytes; grow it \
                 (--grow for files, lvextend for LVs) and retry",
                h.device_size
            ),
        ));
    }
    if !opts.force && !resume {
        check_base(&h, dest, &paths)?;
    }
    let mut report = ApplyReport {
        recovery,
        header: h.clone(),
        data_records: 0,
        data_bytes: 0,
        zeroed_bytes: 0,
        dry_run: opts.dry_run,
    };
    if opts.dry_run {
        while let Some(item) = reader.next_item()? {
            count(&mut report, &item);
        }
        return Ok(report);
    }
    // Capped at the base's size only when the base is checked and no older state may be
    // restored through this journal (span.rs).
    let span = match opts.force || opts.snapback.is_some() {
        true => UndoSpan::whole(size_before),
        false => UndoSpan::capped(&h, size_before),
    };
    if !opts.unsafe_no_journal && !resume {
        check_journal_space(&h, span, &paths)?;
    }
    let mut journal = if resume {
        let held = held.ok_or_else(|| {
            dest_err(dest, "does not exist, so there is nothing to resume".into())
        })?;
        if held.writes_whole_blocks() {
            return Err(dest_err(
                dest,
                "is a thin LV in a pool that skips zeroing new blocks (-Zn), which lvmsync \
                 writes in whole pool blocks: an interrupted apply to it can't be resumed. \
                 Roll it back with `lvmsync recover` and send the whole stream again"
                    .into(),
            ));
        }
        let (journal, cp) = super::resume::prepare(&paths, &h, held)?;
        let marker = match first.take() {
            Some(item) => Some(item),
            None => reader.next_item()?,
        };
        match marker {
            Some(Item::Resume(c)) if c == cp => Some(journal),
            _ => {
                let t = super::resume::token(&cp);
                return Err(Error::Integrity {
                    stream: name.to_string(),
                    detail: format!(
                        "does not continue from the destination's last durable checkpoint; \
                         send with --resume {t}"
                    ),
                });
            }
        }
    } else if opts.unsafe_no_journal {
        None
    } else {
        Some(UndoJournal::create(
            &paths,
            &JournalHead {
                dest: paths.canonical.clone(),
                size_before,
                device_size: h.device_size.0,
                base: h.base,
                target: h.target,
                created_unix: now_unix(),
                source: h.source.clone(),
            },
            span,
            journal_need(&h, span),
        )?)
    };
    // A destination written in whole pool blocks is never kept half-done (see
    // `Destination::writes_whole_blocks`): a failure rolls it back.
    let whole_blocks = held.is_some_and(Destination::writes_whole_blocks);
    if opts.resumable && whole_blocks {
        tracing::warn!(
            dest = %dest.display(),
            "a thin LV whose pool skips zeroing new blocks: if this apply fails it is rolled \
             back, not kept for --resume"
        );
    }
    let resumable = (opts.resumable || resume) && !whole_blocks;
    let ahead = Ahead::default();
    // Set once the destination may be written (it is open, claimed, from the start): a
    // failure before it wrote nothing.
    let mut started = false;
    // The destination file this apply creates, if it did not exist.
    let mut created = None;
    let run = std::thread::scope(|s| -> Result<()> {
        // The journaling thread while it runs. Every way out of `body` ends at the one join
        // below, so a panic in it is reported as an error instead of re-raised by the scope.
        let mut journaling = None;
        let body = (|| -> Result<()> {
            let mut j = journal.as_mut();
            let mut covered = Covered::default();
            let mut behind = None;
            if let Some(pre) = prepass {
                // Journaling ahead puts every entry before the first progress frame, which a
                // resumable apply can't have: there the pipeline journals as it goes.
                match (held, j.take()) {
                    (Some(old), Some(jj)) if !resumable => {
                        // It goes on into the applying pass, whose writer waits for its syncs.
                        let ahead = &ahead;
                        behind = Some(jj.durable());
                        journaling =
                            Some(s.spawn(move || (journal_ahead(ahead, old, &mut *jj), jj)));
                    }
                    (_, jj) => j = jj,
                }
                // (A failed verification stops the journaling thread itself.)
                verify(pre, name, &h, &ahead)?;
                if journaling.is_some() {
                    let (cov, all) = ahead.covered();
                    covered = cov;
                    if ahead.stopped_under_us() {
                        // The journaling thread failed while the stream was being verified:
                        // its error (from the join) comes before the destination is written.
                        return Err(journaling_stopped(&paths.journal));
                    }
                    if !all {
                        // Past the range limit: the pipeline journals the rest itself.
                        if let Some(t) = journaling.take() {
                            behind = None;
                            let jj = join_journaling(t, &ahead, &paths.journal, Ok(()))?;
                            jj.sync()?;
                            j = Some(jj);
                        }
                    }
                }
            }
            let d = match held {
                Some(d) => d,
                None => &*created.insert(Destination::open(dest, true)?),
            };
            started = true;
            // Grow only now that the journal head (with the old size) is durable.
            if size_before < h.device_size.0 {
                d.set_len(h.device_size.0)?;
            }
            super::pipeline::run_records(
                &mut reader,
                first,
                d,
                name,
                JournalPlan {
                    journal: j,
                    behind: behind.map(|durable| (&ahead, durable)),
                    ahead: covered,
                    resumable,
                },
                &mut report,
                progress,
            )?;
            d.sync()
        })();
        match journaling {
            Some(t) => join_journaling(t, &ahead, &paths.journal, body).map(drop),
            None => body,
        }
    });
    match run {
        Ok(()) => {}
        Err(e) if !started => {
            // Nothing was written to the destination: a new journal only has to go (a
            // resumed one keeps its durable part for the next try).
            if journal.take().is_some() && !resume {
                retire(&paths)?;
            }
            return Err(e);
        }
        Err(e) => {
            if let Some(cp) = journal
                .as_ref()
                .and_then(|j| j.progress())
                .filter(|_| resumable)
            {
                return Err(keep_partial(e, name, dest, &cp));
            }
            drop(journal);
            return Err(roll_back_after(
                e,
                &paths,
                held.or(created.as_ref()),
                opts.unsafe_no_journal,
            ));
        }
    }
    let journal_len = journal.map(|j| j.commit(h.target)).transpose()?;
    DestState {
        dest: paths.canonical.clone(),
        fingerprint: h.target.to_hex(),
        device_size: h.device_size.0,
        source: h.source.clone(),
        applied_unix: now_unix(),
    }
    .save(&paths.state)?;
    match (&opts.snapback, journal_len) {
        (_, None) => {}
        (Some(dir), Some(len)) => {
            super::snapback::keep(&paths.journal, len, dir, &h.target.to_hex())?;
        }
        (None, Some(_)) => retire(&paths)?,
    }
    Ok(report)
}

/// Add `item` to the report's counts.
pub(super) fn count(report: &mut ApplyReport, item: &Item) {
    match item {
        Item::Data { data, .. } => {
            report.data_records += 1;
            report.data_bytes += data.len() as u64;
        }
        Item::Zero { len, .. } | Item::Discard { len, .. } => report.zeroed_bytes += len,
        Item::Checkpoint(_) | Item::Resume(_) => {}
    }
}

/// The stream failed after a durable checkpoint of a resumable apply: keep it, say how to go on.
fn keep_partial(e: Error, name: &str, dest: &Path, cp: &Checkpoint) -> Error {
    Error::Integrity {
        stream: name.to_string(),
        detail: format!(
            "{e}; the destination keeps the verified part up to byte {} (journaled): continue \
             with `lvmsync send ... --resume {}` into `lvmsync receive --resume {}`, or undo it \
             with `lvmsync recover {}`",
            cp.resume_offset,
            super::resume::token(cp),
            dest.display(),
            dest.display()
        ),
    }
}

/// Undo what was written, then return `e` saying so.
fn roll_back_after(
    e: Error,
    paths: &DestPaths,
    held: Option<&Destination>,
    no_journal: bool,
) -> Error {
    if no_journal {
        return e;
    }
    match recover(paths, held) {
        Ok(_) => match e {
            Error::Integrity { stream, detail } => Error::Integrity {
                stream,
                detail: format!("{detail}; the destination was rolled back unchanged"),
            },
            e => e,
        },
        Err(re) => Error::Destination {
            dest: paths.canonical.clone(),
            detail: format!(
                "apply failed ({e}) and rolling back failed too ({re}); run `lvmsync recover` \
                 once the cause is fixed"
            ),
        },
    }
}

/// Join the journaling thread once the work it served ended with `outcome`, stopping it
/// first if that failed (or it would journal on for an apply that is over). Its own error
/// comes first: a failed journal is why the writer, waiting for it, stopped. A panic in it
/// becomes an [`Error::Panicked`] naming the journal (the apply then rolls back or reports,
/// as for any journal failure) instead of a second panic. It carries `outcome`'s error when
/// that is the apply's own (a corrupt stream, a device that can't be grown), whose class it
/// then has; one that only followed from the thread's stop is left out, and the class is
/// [`lvmsync::ErrorClass::Internal`](crate::ErrorClass::Internal) (exit 8).
fn join_journaling<'j>(
    t: std::thread::ScopedJoinHandle<'_, (Result<()>, &'j mut UndoJournal)>,
    ahead: &Ahead,
    journal: &Path,
    outcome: Result<()>,
) -> Result<&'j mut UndoJournal> {
    if outcome.is_err() {
        ahead.stop();
    }
    match t.join() {
        Ok((r, jj)) => r.and(outcome).map(|()| jj),
        Err(_) => Err(Error::Panicked {
            what: format!("{}: the journaling thread", journal.display()),
            during: outcome
                .err()
                .filter(|_| !ahead.waited_in_vain())
                .map(Box::new),
        }),
    }
}

/// The journaling thread stopped with no error of its own to report.
fn journaling_stopped(journal: &Path) -> Error {
    Error::io(
        journal,
        std::io::Error::other("journaling the old bytes stopped before the apply began"),
    )
}
