//! Sans-IO core of the PostgreSQL wire protocol (version 3.0), as spoken by a client.
//!
//! This crate takes bytes and returns typed values; it never reads a socket, never sleeps and
//! knows nothing of tokio. The connection crate (`pg-conn`) moves the bytes; the base-backup
//! decoder (`pg-basebackup`) and the fuzz targets drive the same code directly.
//!
//! - [`frame`]: splits a byte stream into backend messages, with a hard cap on a message's
//!   declared length so that a hostile 5-byte header cannot make us reserve gigabytes.
//! - [`error`]: `ErrorResponse` / `NoticeResponse` with every field and the SQLSTATE.
//! - [`message`]: typed, strictly checked backend messages ([`BackendMessage::parse`]) and the
//!   frontend encoders ([`message::frontend`]).
//! - [`startup`]: the startup / authentication state machine (cleartext, MD5, SCRAM-SHA-256,
//!   SCRAM-SHA-256-PLUS with libpq's `channel_binding` rules), SSLRequest and its reply.
//!
//! Reference: <https://www.postgresql.org/docs/current/protocol-message-formats.html>.

pub mod error;
pub mod frame;
pub mod message;
pub mod query;
pub mod replication;
pub mod startup;

pub use error::{DbError, Severity};
pub use frame::{Frame, FrameError, Framer};
pub use message::{BackendMessage, MessageError};
