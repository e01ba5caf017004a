//! Sans-IO core of the PostgreSQL wire protocol (version 3.0), as spoken by a client.
//!
//! This crate takes bytes and returns typed values; it never reads a socket, never reads a
//! clock, never sleeps and knows nothing of tokio. The connection crate (`pg-conn`) moves the
//! bytes; the base-backup decoder (`pg-basebackup`) and the fuzz targets drive the same code
//! directly.
//!
//! # Modules
//!
//! - [`frame`]: splits a byte stream into backend messages ([`Frame`]: tag + body), with a hard
//!   cap on a message's declared length, and a buffer that grows only with the bytes received,
//!   so that a hostile 5-byte header cannot make us reserve gigabytes.
//! - [`message`]: typed, strictly checked backend messages ([`BackendMessage::parse`]) and the
//!   frontend encoders ([`message::frontend`]: `Query`, password, SASL, CopyData, CancelRequest…).
//! - [`error`]: `ErrorResponse` / `NoticeResponse` with every field and the SQLSTATE
//!   ([`DbError`]).
//! - [`startup`]: the startup / authentication state machine ([`startup::Startup`]): cleartext,
//!   MD5, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS with libpq's `channel_binding` rules; the
//!   SSLRequest and its one-byte reply.
//! - [`query`]: the response machine of one simple `Query` ([`query::Query`]), including the
//!   switch to CopyOut / CopyBoth / CopyIn; [`query::Collector`] buffers small results.
//! - [`replication`]: walsender quoting, [`replication::Lsn`] and WAL file names, typed
//!   results of `IDENTIFY_SYSTEM`, `SHOW`, `TIMELINE_HISTORY`, `CREATE_REPLICATION_SLOT`,
//!   `READ_REPLICATION_SLOT`, the `w` / `k` / `r` messages of physical streaming, and the WAL
//!   receiver machine ([`replication::receiver::WalReceiver`]: keepalive replies, status updates,
//!   the stop at the end LSN, timeline switches).
//!
//! # Contract
//!
//! Input is bytes (into a [`Framer`]) and, for the state machines, one [`Frame`] at a time.
//! Output is typed events, plus bytes appended to a caller-owned `BytesMut` that the caller
//! must send. Times are passed in ([`replication::PgTimestamp::from_system_time`]). Every length
//! or count read from the wire is checked against the bytes present or a limit before anything
//! is allocated; malformed input is an error that names the message and the offset, never a
//! panic. Passwords ([`startup::Password`]) and cancel keys never appear in `Debug` output.
//!
//! # A full startup exchange, driven by hand
//!
//! ```
//! use bytes::BytesMut;
//! use pg_wire::query::Collector;
//! use pg_wire::replication::IdentifySystem;
//! use pg_wire::startup::{ChannelBindingPolicy, Password, Replication, Startup, StartupEvent, StartupParams};
//! use pg_wire::{Framer, frame::MAX_MESSAGE_LEN, message::frontend};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut params = StartupParams::new("backup");
//! params.replication = Replication::Physical;
//! params.application_name = Some("pgplakar".into());
//! let mut startup = Startup::new(params, Some(Password::new("secret")), ChannelBindingPolicy::Prefer);
//! // After a TLS handshake: `startup = startup.with_tls(Some(tls_server_end_point_hash));`
//!
//! let mut out = BytesMut::new();
//! startup.start(&mut out)?; // the StartupMessage
//! // socket.write_all(&out).await?; out.clear();
//!
//! let mut framer = Framer::new(startup.frame_limit());
//! // What the server answers; a real caller reads into `framer.buffer_mut()` instead.
//! // Here: AuthenticationCleartextPassword, AuthenticationOk, one ParameterStatus,
//! // BackendKeyData, ReadyForQuery.
//! framer.feed(b"R\0\0\0\x08\0\0\0\x03");
//! framer.feed(b"R\0\0\0\x08\0\0\0\0");
//! framer.feed(b"S\0\0\0\x19server_version\x0015.18\0");
//! framer.feed(b"K\0\0\0\x0c\0\0\x30\x39\x12\x34\x56\x78");
//! framer.feed(b"Z\0\0\0\x05I");
//! let session = loop {
//!     let Some(frame) = framer.next_frame()? else {
//!         unreachable!("a real caller reads more bytes here");
//!     };
//!     match startup.handle(frame, &mut out)? {
//!         StartupEvent::Ready(session) => break session,
//!         StartupEvent::Notice(notice) => tracing_or_log(&notice.to_string()),
//!         StartupEvent::Authenticated(_) | StartupEvent::Continue => {}
//!     }
//!     // Send whatever `handle` appended (here: the PasswordMessage), then clear `out`.
//!     out.clear();
//! };
//! assert_eq!(session.server_major(), Some(15));
//! assert_eq!(session.backend_key.as_ref().map(|k| k.pid), Some(12345));
//!
//! // Authentication is over: allow CopyData-sized messages, then run a command.
//! framer.set_limit(MAX_MESSAGE_LEN);
//! frontend::query("IDENTIFY_SYSTEM", &mut out)?;
//! let mut collector = Collector::new(1 << 20);
//! let t: &[u8] = b"T\0\0\0\x6f\0\x04\
//!     systemid\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0\
//!     timeline\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0\
//!     xlogpos\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0\
//!     dbname\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0";
//! framer.feed(t);
//! framer.feed(b"D\0\0\0\x33\0\x04\0\0\0\x137711657602428715799\0\0\0\x011\0\0\0\x090/4000440\xff\xff\xff\xff");
//! framer.feed(b"C\0\0\0\x14IDENTIFY_SYSTEM\0Z\0\0\0\x05I");
//! let collected = loop {
//!     let frame = framer.next_frame()?.expect("whole messages were fed");
//!     if let Some(done) = collector.handle(frame)? {
//!         break done;
//!     }
//! };
//! let id = IdentifySystem::from_result(&collected.single()?)?;
//! assert_eq!((id.timeline, id.xlogpos.to_string().as_str()), (1, "0/4000440"));
//! # Ok(())
//! # }
//! # fn tracing_or_log(_: &str) {}
//! ```
//!
//! Reference: <https://www.postgresql.org/docs/current/protocol.html>.

pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod message;
pub mod query;
pub mod replication;
pub mod startup;

pub use error::{DbError, Severity};
pub use frame::{Frame, FrameError, Framer};
pub use message::{BackendMessage, MessageError};
