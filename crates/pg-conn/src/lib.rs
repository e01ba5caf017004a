//! Async PostgreSQL connections for normal and replication sessions.
//!
//! This is the only crate of the project that owns sockets and TLS. It moves bytes between the
//! network and the sans-IO protocol core ([`pg_wire`]):
//!
//! - [`Client::connect`] takes the project's one configuration type ([`pg_config::Config`]),
//!   tries each target in order, and follows libpq's `sslmode` rules exactly (`allow` and
//!   `prefer` retry on a new connection the way libpq does; TLS is never used over a Unix
//!   socket); it never sends a GSSENCRequest.
//! - [`Client::query`] / [`Client::simple_query`] / [`Client::query_one`] run text-mode queries
//!   and replication commands through `pg_wire`'s query machine ([`pg_wire::query::Collector`]).
//! - [`Client::send_query`] + [`Client::read_frame`] hand out whole backend messages whose
//!   bodies share the read buffer: a `BASE_BACKUP` answer streams into its decoder without a
//!   copy. [`Client::send_copy_data`] / [`Client::send_copy_done`] drive COPY BOTH.
//! - Errors ([`Error`]) say which server, which step, and carry the server's SQLSTATE.

mod client;
mod error;
pub mod tls;
mod transport;

pub use client::{CancelToken, Client, QUERY_BUFFER_LIMIT, Row, Tap};
pub use error::{Error, ErrorKind, Step};
