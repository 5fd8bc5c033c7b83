//! Progress reporting for send and apply: an indicatif bar on a terminal, JSON lines
//! (bytes, total, rate, ETA) for scripts and logs, or nothing.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How to show progress (`--progress=auto|bar|json|none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar if stderr is a terminal, JSON lines otherwise.
    #[default]
    Auto,
    /// Always a bar.
    Bar,
    /// JSON lines on stderr.
    Json,
    /// Nothing.
    None,
}

impl std::str::FromStr for ProgressMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ProgressMode::Auto),
            "bar" => Ok(ProgressMode::Bar),
            "json" => Ok(ProgressMode::Json),
            "none" => Ok(ProgressMode::None),
            _ => Err(format!(
                "unknown progress mode {s:?} (auto, bar, json, none)"
            )),
        }
    }
}

/// The bar on screen, if any, so log lines can be printed above it ([`suspend`]).
static SHOWN: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

/// Run `f`, which writes whole lines to stderr, with the progress bar (if one is drawn)
/// cleared first and redrawn after, so log lines and the bar never cut into each other.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let shown = SHOWN.lock().ok().and_then(|b| b.clone());
    match shown {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// A live progress display for one operation.
pub struct Progress {
    op: &'static str,
    bar: Option<ProgressBar>,
    json: bool,
    start: Instant,
    last: Option<Instant>,
    done: u64,
    total: u64,
}

impl Progress {
    /// Start showing progress of `op` ("send", "apply").
    pub fn new(mode: ProgressMode, op: &'static str) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = matches!(mode, ProgressMode::Bar) || (mode == ProgressMode::Auto && tty);
        let json = mode == ProgressMode::Json || (mode == ProgressMode::Auto && !tty);
        let bar = bar.then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_message(op);
            if let Ok(mut shown) = SHOWN.lock() {
                *shown = Some(b.clone());
            }
            b
        });
        Progress {
            op,
            bar,
            json,
            start: Instant::now(),
            last: None,
            done: 0,
            total: 0,
        }
    }

    /// Report `done` of `total` bytes.
    pub fn update(&mut self, done: u64, total: u64) {
        (self.done, self.total) = (done, total);
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_position(done);
        }
        if self.json
            && self
                .last
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(500))
        {
            self.last = Some(Instant::now());
            self.emit_json();
        }
    }

    fn emit_json(&self) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-6);
        let rate = self.done as f64 / secs;
        let eta = if rate > 0.0 {
            (self.total.saturating_sub(self.done)) as f64 / rate
        } else {
            0.0
        };
        let line = serde_json::json!({
            "op": self.op, "bytes": self.done, "total": self.total,
            "rate_bytes_per_s": rate.round(), "eta_s": (eta * 10.0).round() / 10.0,
        });
        let _ = writeln!(std::io::stderr(), "{line}");
    }

    /// Final report.
    pub fn finish(&mut self) {
        if let Some(b) = &self.bar {
            b.finish();
            if let Ok(mut shown) = SHOWN.lock() {
                *shown = None;
            }
            // The finished bar stays on screen; later lines start below it.
            if !b.is_hidden() {
                let _ = writeln!(std::io::stderr());
            }
        }
        if self.json {
            self.emit_json();
        }
    }
}
