//! Async PostgreSQL connections for normal and replication sessions.
//!
//! This is the only crate of the project that owns sockets and TLS. It moves bytes between the
//! network and the sans-IO protocol core ([`pg_wire`]).

pub mod tls;
