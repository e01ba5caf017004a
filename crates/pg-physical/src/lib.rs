//! The physical backup source: a base backup taken with the project's own replication client.

pub mod command;
pub mod wal;
