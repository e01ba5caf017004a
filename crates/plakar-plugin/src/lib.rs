//! A runtime for Plakar importer and exporter plugins (plugin API v1.1).
//!
//! A Plakar plugin is a separate process that serves gRPC (cleartext HTTP/2 with prior
//! knowledge) on its own stdin/stdout; Plakar is the client, spawns one process per importer or
//! exporter instance, and kills it (SIGKILL) or closes its pipes when done. This crate holds
//! everything such a process needs apart from the backup logic itself:
//!
//! - [`proto`]: the importer, exporter and shared messages, generated at build time from the
//!   project's own `.proto` files (written from the contract, same packages, names and field
//!   numbers as `integration-grpc` v1.1.0) with `protox`, so no `protoc` is needed;
//! - [`stdio`]: stdout hygiene ([`stdio::guard_stdout`] moves the real stdout aside for gRPC
//!   and points fd 1 at stderr, so a stray write cannot corrupt the transport) and serving one
//!   HTTP/2 connection over the pipes with hyper's `serve_connection`, which returns when the
//!   host closes them;
//! - [`children`]: child processes that die with the plugin (`PR_SET_PDEATHSIG`, own process
//!   group, killed on `Close` and at exit);
//! - [`import`]: the Import side: [`import::PlakarSink`] adapts the project's
//!   [`record_sink::RecordSink`] to the `Import` / `Open` RPCs (records out, acknowledgements
//!   in, `finished` once, bodies served on `Open` in chunks of at most 1 MiB, small files
//!   buffered in bounded memory so the source's stream keeps moving);
//! - [`export`]: the Export side: [`export::ExportEntries`] turns the `Export` stream into
//!   entries with bodies, one result per record;
//! - [`run_importer`] and [`run_exporter`]: the whole process, for a binary's `main`.
//!
//! Logs go to stderr only ([`init_logging`]); nothing in this crate writes to stdout.

#![deny(clippy::print_stdout)]

pub mod children;
pub mod export;
pub mod import;
pub mod mode;
pub mod proto;
mod server;
pub mod stdio;

pub use server::{
    ExportJob, ExporterFactory, HostOptions, ImportJob, ImporterFactory, InitArgs, InitInfo, run_exporter,
    run_importer, serve_exporter, serve_importer,
};

/// `InitResponse.flags` bit: the importer streams (no second "stats" process, no second Import).
pub const FLAG_STREAM: u32 = 4;
/// `InitResponse.flags` bit: the importer wants acknowledgements (always forced on by the host).
pub const FLAG_NEEDACK: u32 = 8;
/// `InitResponse.flags` bit: refuse merging several importers of this type and origin.
pub const FLAG_NOMERGE: u32 = 16;

/// The largest chunk this crate ever puts in one `OpenResponse` (the host rejects messages over
/// 4 MiB; the Go SDK and the host both use 1 MiB).
pub const MAX_CHUNK: usize = 1 << 20;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default `info`).
///
/// The HTTP/2 and gRPC libraries are capped at `info` whatever `RUST_LOG` says: at `trace` they
/// describe frames, and the `Init` frame carries the configuration, password included.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter =
        EnvFilter::try_new(format!("{base},h2=info,hyper=info,hyper_util=info,tonic=info,tower=info"))
            .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
