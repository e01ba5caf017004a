//! SIGINT and SIGTERM during a command: cancel the running plan instead of dying at once.
//!
//! Dying at once would leave the WAL spool on disk, the target directory half written and
//! unmarked, and the server holding the temporary slots until it notices the dead connection.
//! Cancelling drops the running source (its connections close, so the server drops the
//! temporary slots; its WAL receiver and spool go with it) and the orchestrator aborts the sink
//! with the reason (which removes what it wrote, unless `--no-clean`). The command then exits
//! with a failure naming the signal.

use std::sync::{Arc, Mutex};

use backup_plan::CancellationToken;
use tokio::signal::unix::{SignalKind, signal};

/// Which signal cancelled the command, once one has.
#[derive(Clone, Default)]
pub(crate) struct Interrupted(Arc<Mutex<Option<&'static str>>>);

impl Interrupted {
    /// The name of the signal that arrived (`SIGINT`, `SIGTERM`), if one did.
    pub(crate) fn signal(&self) -> Option<&'static str> {
        self.0.lock().ok().and_then(|g| *g)
    }
}

/// Cancels `cancel` on the first SIGINT or SIGTERM. Must run inside the runtime; the watcher
/// task ends with the runtime.
pub(crate) fn cancel_on_signals(cancel: CancellationToken) -> std::io::Result<Interrupted> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let interrupted = Interrupted::default();
    let seen = interrupted.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        tracing::warn!("{name} received: stopping the backup");
        if let Ok(mut g) = seen.0.lock() {
            *g = Some(name);
        }
        cancel.cancel();
    });
    Ok(interrupted)
}
