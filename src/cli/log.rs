//! `--log-format=text|json`: where lvmsync's messages go and how they look.
//!
//! Every message on stderr is a `tracing` event. `text` (the default) prints each as one line
//! for people, `lvmsync: <message>` (`lvmsync: error: ...`, `lvmsync: warning: ...`), without
//! the structured fields; `json` prints each as one JSON object a line (tracing-subscriber's
//! json formatter: timestamp, level, target, and the fields with the message) for machines.
//! `LVMSYNC_LOG` sets the filter (default `info`; e.g. `LVMSYNC_LOG=debug`).
//!
//! Lines are written whole, with a progress bar (if one is drawn) cleared first and redrawn
//! after, so log lines and `--progress` output never cut into each other; `--progress=json`
//! lines are JSON too, so with `--log-format=json` every stderr line is a JSON object.

use clap::ValueEnum;
use lvmsync::transport::ssh::REMOTE_STDERR_TARGET;
use std::fmt;
use std::io::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines look on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// `lvmsync: <message>` lines for people.
    #[default]
    Text,
    /// One JSON object a line (timestamp, level, target, fields) for machines.
    Json,
}

/// Install the global subscriber for `format`. Call once, first thing.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LVMSYNC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(WholeLines);
    let _ = match format {
        LogFormat::Text => builder.event_format(Text).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// True when the command line asks for JSON logs (`--log-format json` or `=json`); for errors
/// found before the arguments could be parsed.
pub fn json_requested(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.iter().any(|a| a == "--log-format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--log-format" && w[1] == "json")
}

/// The text format: `lvmsync: [error: |warning: ]<message>`; an event without a message shows
/// its fields instead. Lines relayed from a remote lvmsync's stderr are printed as they came.
struct Text;

/// Picks the `message` field out of an event.
#[derive(Default)]
struct Message(Option<String>);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut msg = Message::default();
        event.record(&mut msg);
        let meta = event.metadata();
        if meta.target() == REMOTE_STDERR_TARGET {
            return writeln!(w, "{}", msg.0.unwrap_or_default());
        }
        w.write_str("lvmsync: ")?;
        match *meta.level() {
            Level::ERROR => w.write_str("error: ")?,
            Level::WARN => w.write_str("warning: ")?,
            _ => {}
        }
        match msg.0 {
            Some(m) => w.write_str(&m)?,
            None => ctx.field_format().format_fields(w.by_ref(), event)?,
        }
        writeln!(w)
    }
}

/// Makes a [`Line`] per event.
struct WholeLines;

impl<'a> MakeWriter<'a> for WholeLines {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line(Vec::with_capacity(256))
    }
}

/// One event's bytes, written to stderr in one piece (above any progress bar) when dropped.
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            lvmsync::stream::progress::suspend(|| {
                let _ = io::stderr().lock().write_all(&self.0);
            });
        }
    }
}
