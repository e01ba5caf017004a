//! The receiving side of physical streaming (`START_REPLICATION … PHYSICAL`), as a sans-IO
//! machine: what `pg_basebackup -X stream` and `pg_receivewal` do in `receivelog.c`
//! (`HandleCopyStream`), without a socket or a clock.
//!
//! After sending `START_REPLICATION [SLOT s] PHYSICAL X/X TIMELINE n` (start at a segment
//! boundary), the caller feeds every backend frame to [`WalReceiver::handle`] and calls
//! [`WalReceiver::poll`] each time it wakes up (a frame arrived, [`WalReceiver::deadline`]
//! passed, the end became known with [`WalReceiver::stop_at`]). Both take the current time as a
//! value and append to `out` what must be sent to the server:
//!
//! - a standby status update (`r`) as soon as streaming starts, then every status interval
//!   (10 s by default, `pg_basebackup --status-interval`), and at once when a keepalive asks
//!   for a reply;
//! - once everything before the end LSN has been received: a last status update and CopyDone,
//!   after which the rest of the server's answer (its CopyDone, CommandComplete,
//!   ReadyForQuery) ends the stream with [`ReceiverEvent::Finished`].
//!
//! WAL is handed out as [`ReceiverEvent::Wal`]; the caller must have stored it before its next
//! call, since status updates confirm every byte handed out as written (and, with a slot,
//! flushed: the slot then advances, as with `pg_basebackup`).
//!
//! Errors keep their kind: a server error with its SQLSTATE and the position reached, the
//! server ending the stream early (a timeline switch: CopyDone and the end-of-timeline result
//! set, or a shutdown), a gap in the WAL, a malformed message. The order of the messages is
//! checked by the one query machine of this crate ([`Query`]).

use std::time::{Duration, SystemTime};

use bytes::BytesMut;

use crate::error::DbError;
use crate::frame::Frame;
use crate::query::{Query, QueryError, QueryEvent};
use crate::replication::{
    Lsn, PgTimestamp, ReplicationMessage, ReplicationMessageError, StandbyStatusUpdate, XLogData,
};

/// How often a status update is sent when nothing asks for one (`pg_basebackup`'s default
/// `--status-interval`; the server's `wal_sender_timeout` is 60 s by default).
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// What the caller must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiverEvent {
    /// WAL starting at `wal_start` (contiguous with the previous piece): store it before the
    /// next call.
    Wal(XLogData),
    /// A notice or warning from the server.
    Notice(Box<DbError>),
    /// Everything up to the end LSN was received and the server ended the command: the
    /// connection is idle again.
    Finished,
}

/// Where the stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `START_REPLICATION` sent, no CopyBothResponse yet.
    Starting,
    /// Receiving WAL.
    Streaming,
    /// The end was reached and our CopyDone sent: reading the end of the server's answer.
    Ending,
    /// The server ended the stream before the end (a timeline switch): reading its
    /// end-of-timeline result before failing.
    EndedEarly,
    /// [`ReceiverEvent::Finished`] was returned.
    Finished,
    /// An error was returned; the connection should be closed.
    Failed,
}

/// Why the stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiverError {
    /// The server answered with an ErrorResponse (a removed WAL segment `58P01`, a terminated
    /// walsender `57P01`, …).
    #[error(
        "{} at {at}: {error}",
        if *started { "the server failed the WAL stream" } else { "START_REPLICATION failed" }
    )]
    Server {
        /// The server's error, with its SQLSTATE.
        error: Box<DbError>,
        /// Everything before this position had been received.
        at: Lsn,
        /// Whether streaming had begun (false: `START_REPLICATION` itself was refused).
        started: bool,
    },
    /// The server ended the stream before the end LSN: its timeline ended (the server was
    /// promoted or follows a new primary), so the WAL the backup needs is not on this timeline.
    #[error(
        "the server ended the WAL stream at {at}, before {}: its timeline ended{} (was the server promoted?)",
        end.map_or_else(|| "the backup's end".to_owned(), |e| format!("the backup's end {e}")),
        next_timeline.map_or_else(String::new, |(tli, lsn)| format!("; timeline {tli} starts at {lsn}"))
    )]
    TimelineEnded {
        /// Everything before this position had been received.
        at: Lsn,
        /// Where the stream should have gone, if known by then.
        end: Option<Lsn>,
        /// The next timeline and where it starts, from the server's end-of-timeline result.
        next_timeline: Option<(u32, Lsn)>,
    },
    /// The server ended the command without ending the COPY (a walsender stopping for a
    /// shutdown).
    #[error("the server ended the WAL stream at {at} without finishing it (is it shutting down?)")]
    ServerEnded {
        /// Everything before this position had been received.
        at: Lsn,
    },
    /// A piece of WAL that does not continue the stream.
    #[error("WAL payload at {got} does not continue the stream at {expected}")]
    Gap {
        /// Where the stream was.
        expected: Lsn,
        /// Where the payload starts.
        got: Lsn,
    },
    /// A piece of WAL that runs past the end of the WAL address space.
    #[error("WAL payload of {len} bytes at {at} runs past the largest possible LSN")]
    Overflow {
        /// Where the payload starts.
        at: Lsn,
        /// Its length.
        len: usize,
    },
    /// A CopyData payload that is not a streaming message.
    #[error("invalid replication message in the WAL stream at {at}")]
    Message {
        /// Everything before this position had been received.
        at: Lsn,
        /// What is wrong with it.
        source: ReplicationMessageError,
    },
    /// A message the protocol does not allow here.
    #[error("protocol violation in the WAL stream at {at}")]
    Protocol {
        /// Everything before this position had been received.
        at: Lsn,
        /// The violation.
        source: QueryError,
    },
    /// `handle` or `poll` was called after the stream finished or failed.
    #[error("the WAL stream is already over")]
    Over,
}

/// The WAL receiver of one `START_REPLICATION … PHYSICAL` command.
#[derive(Debug)]
pub struct WalReceiver {
    query: Query,
    phase: Phase,
    position: Lsn,
    end: Option<Lsn>,
    slot: bool,
    interval: Duration,
    last_status: Option<SystemTime>,
    next_timeline: Option<(u32, Lsn)>,
}

impl WalReceiver {
    /// A receiver for a `START_REPLICATION` from `start`, just sent. With `slot`, status
    /// updates confirm the received WAL as flushed (the slot advances, as pg_basebackup does);
    /// without, they report no flush position, so the client never counts as a synchronous
    /// standby.
    pub fn new(start: Lsn, slot: bool) -> Self {
        Self {
            query: Query::new(),
            phase: Phase::Starting,
            position: start,
            end: None,
            slot,
            interval: DEFAULT_STATUS_INTERVAL,
            last_status: None,
            next_timeline: None,
        }
    }

    /// Sets the status interval (at least one update per interval while streaming).
    pub fn with_status_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The first byte not yet received.
    pub fn position(&self) -> Lsn {
        self.position
    }

    /// The end LSN, once known.
    pub fn end(&self) -> Option<Lsn> {
        self.end
    }

    /// Where the stream stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether [`ReceiverEvent::Finished`] was returned.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Stop once everything before `end` has been received (the next [`WalReceiver::poll`]
    /// ends the stream if that is already the case).
    pub fn stop_at(&mut self, end: Lsn) {
        self.end = Some(end);
    }

    /// When [`WalReceiver::poll`] must be called at the latest if nothing arrives: the next
    /// status update is due then (`None`: no timer is running). A time in the past means
    /// "now".
    pub fn deadline(&self) -> Option<SystemTime> {
        if self.phase != Phase::Streaming {
            return None;
        }
        Some(match self.last_status {
            Some(last) => last.checked_add(self.interval).unwrap_or(last),
            None => SystemTime::UNIX_EPOCH,
        })
    }

    /// Does what the time and the end require: ends the stream (last status update and
    /// CopyDone into `out`) once the end has been reached, or sends the periodic status update.
    pub fn poll(&mut self, now: SystemTime, out: &mut BytesMut) -> Result<(), ReceiverError> {
        match self.phase {
            Phase::Streaming => {}
            Phase::Finished | Phase::Failed => return Err(ReceiverError::Over),
            Phase::Starting | Phase::Ending | Phase::EndedEarly => return Ok(()),
        }
        if self.end.is_some_and(|end| self.position >= end) {
            self.status(now, out);
            crate::message::frontend::copy_done(out);
            self.phase = Phase::Ending;
            return Ok(());
        }
        let due = match self.last_status {
            None => true,
            // A clock that went backwards counts as due: better one update too many.
            Some(last) => now.duration_since(last).map_or(true, |elapsed| elapsed >= self.interval),
        };
        if due {
            self.status(now, out);
        }
        Ok(())
    }

    /// Handles one backend frame; appends to `out` what must be sent (a status update when a
    /// keepalive asks for one, CopyDone when the server ended the stream first).
    pub fn handle(
        &mut self,
        frame: Frame,
        now: SystemTime,
        out: &mut BytesMut,
    ) -> Result<Option<ReceiverEvent>, ReceiverError> {
        let result = self.handle_inner(frame, now, out);
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    fn handle_inner(
        &mut self,
        frame: Frame,
        now: SystemTime,
        out: &mut BytesMut,
    ) -> Result<Option<ReceiverEvent>, ReceiverError> {
        if matches!(self.phase, Phase::Finished | Phase::Failed) {
            return Err(ReceiverError::Over);
        }
        // A walsender that stops for a shutdown ends the command inside the COPY, which the
        // query machine would report as a mere protocol violation.
        if self.phase == Phase::Streaming && frame.tag == b'C' {
            return Err(ReceiverError::ServerEnded { at: self.position });
        }
        let at = self.position;
        let event = self.query.handle(frame).map_err(|source| ReceiverError::Protocol { at, source })?;
        match event {
            QueryEvent::Notice(n) => return Ok(Some(ReceiverEvent::Notice(Box::new(n)))),
            QueryEvent::ParameterStatus { .. } | QueryEvent::Notification(_) => {}
            QueryEvent::Error(e) => {
                return Err(ReceiverError::Server {
                    error: Box::new(e),
                    at,
                    started: self.phase != Phase::Starting,
                });
            }
            QueryEvent::CopyBoth(_) if self.phase == Phase::Starting => self.phase = Phase::Streaming,
            // After our CopyDone, the server may still send what was in flight: ignored, as
            // receivelog.c does.
            QueryEvent::CopyData(payload) => {
                if self.phase == Phase::Streaming {
                    return self.copy_data(payload, now, out);
                }
            }
            QueryEvent::CopyDone => match self.phase {
                Phase::Ending => {}
                _ => {
                    // The server ended its timeline: answer CopyDone, as the protocol asks, and
                    // read its end-of-timeline result to say where the next timeline starts.
                    crate::message::frontend::copy_done(out);
                    self.phase = Phase::EndedEarly;
                }
            },
            // The end-of-timeline result set (`next_tli`, `next_tli_startpos`), also sent
            // without any COPY when the start point is the end of a historic timeline.
            QueryEvent::RowDescription(_) if matches!(self.phase, Phase::Starting | Phase::EndedEarly) => {
                self.phase = Phase::EndedEarly;
            }
            QueryEvent::Row(row) if self.phase == Phase::EndedEarly => {
                let tli = row.get(0).ok().flatten().and_then(|t| t.parse().ok());
                let lsn = row.get(1).ok().flatten().and_then(|l| l.parse().ok());
                if let (Some(tli), Some(lsn)) = (tli, lsn) {
                    self.next_timeline = Some((tli, lsn));
                }
            }
            QueryEvent::RowDescription(_) | QueryEvent::Row(_) if self.phase == Phase::Ending => {}
            QueryEvent::CommandComplete(_) if matches!(self.phase, Phase::Ending | Phase::EndedEarly) => {}
            QueryEvent::Ready(_) => match self.phase {
                Phase::Ending => {
                    self.phase = Phase::Finished;
                    return Ok(Some(ReceiverEvent::Finished));
                }
                Phase::EndedEarly => {
                    return Err(ReceiverError::TimelineEnded {
                        at,
                        end: self.end,
                        next_timeline: self.next_timeline,
                    });
                }
                _ => return Err(ReceiverError::ServerEnded { at }),
            },
            other => {
                let message = query_event_name(&other);
                return Err(ReceiverError::Protocol {
                    at,
                    source: QueryError::Unexpected { message, state: self.state() },
                });
            }
        }
        Ok(None)
    }

    fn copy_data(
        &mut self,
        payload: bytes::Bytes,
        now: SystemTime,
        out: &mut BytesMut,
    ) -> Result<Option<ReceiverEvent>, ReceiverError> {
        let at = self.position;
        match ReplicationMessage::parse(payload).map_err(|source| ReceiverError::Message { at, source })? {
            ReplicationMessage::XLogData(x) => {
                if x.wal_start != self.position {
                    return Err(ReceiverError::Gap { expected: self.position, got: x.wal_start });
                }
                self.position = x
                    .wal_start
                    .checked_add(x.data.len() as u64)
                    .ok_or(ReceiverError::Overflow { at: x.wal_start, len: x.data.len() })?;
                Ok(Some(ReceiverEvent::Wal(x)))
            }
            ReplicationMessage::PrimaryKeepalive(k) => {
                if k.reply_requested {
                    self.status(now, out);
                }
                Ok(None)
            }
        }
    }

    /// Appends a standby status update confirming everything handed out so far.
    fn status(&mut self, now: SystemTime, out: &mut BytesMut) {
        let update = StandbyStatusUpdate {
            write: self.position,
            flush: if self.slot { self.position } else { Lsn::INVALID },
            apply: Lsn::INVALID,
            client_time: PgTimestamp::from_system_time(now),
            reply_requested: false,
        };
        update.encode(out);
        self.last_status = Some(now);
    }

    fn state(&self) -> &'static str {
        match self.phase {
            Phase::Starting => "before the WAL stream",
            Phase::Streaming => "in the WAL stream",
            Phase::Ending | Phase::EndedEarly => "at the end of the WAL stream",
            Phase::Finished | Phase::Failed => "after the WAL stream",
        }
    }
}

fn query_event_name(e: &QueryEvent) -> &'static str {
    match e {
        QueryEvent::RowDescription(_) => "RowDescription",
        QueryEvent::Row(_) => "DataRow",
        QueryEvent::CommandComplete(_) => "CommandComplete",
        QueryEvent::EmptyQuery => "EmptyQueryResponse",
        QueryEvent::Error(_) => "ErrorResponse",
        QueryEvent::Notice(_) => "NoticeResponse",
        QueryEvent::ParameterStatus { .. } => "ParameterStatus",
        QueryEvent::Notification(_) => "NotificationResponse",
        QueryEvent::CopyOut(_) => "CopyOutResponse",
        QueryEvent::CopyBoth(_) => "CopyBothResponse",
        QueryEvent::CopyIn(_) => "CopyInResponse",
        QueryEvent::CopyData(_) => "CopyData",
        QueryEvent::CopyDone => "CopyDone",
        QueryEvent::Ready(_) => "ReadyForQuery",
    }
}

#[cfg(test)]
mod tests;
