//! The progress display: a bar on stderr when it is a terminal (bytes, rate, and an ETA once
//! the server's size estimate is known), nothing otherwise. It wraps the real sink, so every
//! kind of backup shows it the same way.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use record_sink::{Flow, Record, RecordSink, SinkError, Wants};

/// Whether to draw progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ui {
    enabled: bool,
}

impl Ui {
    /// Progress on stderr when it is a terminal and `--quiet` was not given.
    pub(crate) fn new(quiet: bool) -> Self {
        Self { enabled: !quiet && std::io::stderr().is_terminal() }
    }

    /// A display for one backup; `total` receives the expected size when it becomes known.
    pub(crate) fn progress(&self, what: &str, total: Option<Arc<AtomicU64>>) -> Progress {
        let bar = self.enabled.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(8));
            bar.set_style(unknown_style());
            bar.set_prefix(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress { bar, total, total_set: false }
    }
}

fn unknown_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix} {bytes} ({binary_bytes_per_sec}) {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn known_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} [{bar:30}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, ETA {eta}) {wide_msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// One backup's display.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    total: Option<Arc<AtomicU64>>,
    total_set: bool,
}

impl Progress {
    fn advance(&mut self, bytes: u64) {
        let Some(bar) = &self.bar else { return };
        if !self.total_set
            && let Some(total) = &self.total
        {
            let t = total.load(Ordering::Relaxed);
            if t > 0 {
                bar.set_length(t);
                bar.set_style(known_style());
                self.total_set = true;
            }
        }
        // The estimate is the server's; the real size may be a little larger.
        if let Some(len) = bar.length()
            && bar.position() + bytes > len
        {
            bar.set_length(bar.position() + bytes);
        }
        bar.inc(bytes);
    }

    fn message(&self, record: &Record) {
        if let Some(bar) = &self.bar {
            bar.set_message(record.path.to_string());
        }
    }

    /// Removes the bar.
    pub(crate) fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A sink that counts what passes and shows it, then hands everything to `inner`.
#[derive(Debug)]
pub(crate) struct ProgressSink<'a, S> {
    inner: &'a mut S,
    progress: Progress,
    /// Files and bytes of content that reached the sink.
    pub(crate) files: u64,
    pub(crate) bytes: u64,
}

impl<'a, S: RecordSink> ProgressSink<'a, S> {
    pub(crate) fn new(inner: &'a mut S, progress: Progress) -> Self {
        Self { inner, progress, files: 0, bytes: 0 }
    }
}

impl<S: RecordSink> RecordSink for ProgressSink<'_, S> {
    async fn record(&mut self, record: &Record) -> Result<Wants, SinkError> {
        if let record_sink::EntryKind::File { .. } = record.kind {
            self.files += 1;
            self.progress.message(record);
        }
        self.inner.record(record).await
    }

    async fn data(&mut self, chunk: Bytes) -> Result<Flow, SinkError> {
        let len = chunk.len() as u64;
        self.bytes += len;
        self.progress.advance(len);
        self.inner.data(chunk).await
    }

    async fn end_file(&mut self) -> Result<(), SinkError> {
        self.inner.end_file().await
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        if let Some(bar) = &self.progress.bar {
            bar.set_message("flushing to disk");
        }
        let r = self.inner.finish().await;
        self.progress.done();
        r
    }

    async fn abort(&mut self, reason: &str) -> Result<(), SinkError> {
        self.progress.done();
        self.inner.abort(reason).await
    }
}
