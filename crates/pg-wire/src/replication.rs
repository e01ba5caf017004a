//! Replication-protocol pieces: quoting for walsender commands, the [`Lsn`] type and WAL file
//! names, typed results of the replication commands, the CopyBoth sub-messages of physical
//! streaming, and the WAL receiver that drives them ([`receiver::WalReceiver`]).
//!
//! Implements <https://www.postgresql.org/docs/current/protocol-replication.html>: the
//! walsender grammar (`src/backend/replication/repl_gram.y`, `repl_scanner.l`), the result sets
//! built in `walsender.c` (`IdentifySystem`, `SendTimeLineHistory`, `CreateReplicationSlot`,
//! `ReadReplicationSlot`), and the XLogData / keepalive / standby status layouts
//! (`XLogSendPhysical`, `WalSndKeepalive`, `ProcessStandbyReplyMessage`).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use crate::query::ResultSet;

pub mod receiver;

// ---------------------------------------------------------------------------------------------
// Quoting

/// A string that cannot be quoted for a replication command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// A NUL byte: the protocol carries commands as C strings, so the server would see the
    /// command cut at that point.
    #[error("{what} contains a NUL byte, which a protocol message cannot carry")]
    Nul {
        /// What was being quoted.
        what: &'static str,
    },
    /// A line break in a backup label, which would corrupt the line-oriented `backup_label`.
    #[error("the backup label contains a line break, which would corrupt the backup_label file")]
    LineBreak,
    /// A slot name outside `[a-z0-9_]{1,63}` (`ReplicationSlotValidateName` in `slot.c`).
    #[error(
        "invalid replication slot name {0:?}: use 1 to 63 characters among lower-case letters, digits and underscores"
    )]
    SlotName(String),
}

/// Quotes a string literal for the walsender grammar: `'…'` with `'` doubled and backslashes
/// literal. Never `E'…'`, which `repl_scanner.l` does not understand.
pub fn quote_literal(s: &str) -> Result<String, QuoteError> {
    if s.contains('\0') {
        return Err(QuoteError::Nul { what: "the string literal" });
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    for c in s.chars() {
        if c == '\'' {
            q.push('\'');
        }
        q.push(c);
    }
    q.push('\'');
    Ok(q)
}

/// Quotes a backup label: like [`quote_literal`], also refusing line breaks.
pub fn quote_label(label: &str) -> Result<String, QuoteError> {
    if label.contains(['\n', '\r']) {
        return Err(QuoteError::LineBreak);
    }
    quote_literal(label).map_err(|_| QuoteError::Nul { what: "the backup label" })
}

/// Validates a slot name against PostgreSQL's rule (`[a-z0-9_]{1,63}`) and returns it
/// double-quoted, as pg_basebackup sends it.
pub fn quote_slot_name(name: &str) -> Result<String, QuoteError> {
    let ok = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(QuoteError::SlotName(name.to_owned()));
    }
    Ok(format!("\"{name}\""))
}

// ---------------------------------------------------------------------------------------------
// LSN and WAL file names

/// A WAL position (`XLogRecPtr`), written `X/X` in hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// Text that is not an `X/X` LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two groups of 1 to 8 hex digits separated by '/', e.g. 0/3000028")]
pub struct LsnParseError(String);

/// A WAL segment size that is not a power of two between 1 MiB and 1 GiB.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WAL segment size {0}: must be a power of two between 1 MiB and 1 GiB")]
pub struct SegmentSizeError(pub u64);

/// Checks a WAL segment size (`IsValidWalSegSize` in `xlog_internal.h`).
pub fn check_segment_size(seg_size: u64) -> Result<(), SegmentSizeError> {
    if seg_size.is_power_of_two() && ((1 << 20)..=(1 << 30)).contains(&seg_size) {
        Ok(())
    } else {
        Err(SegmentSizeError(seg_size))
    }
}

impl Lsn {
    /// The invalid LSN `0/0`.
    pub const INVALID: Lsn = Lsn(0);

    /// The WAL segment number holding this position (`XLByteToSeg`).
    pub fn segment(self, seg_size: u64) -> Result<u64, SegmentSizeError> {
        check_segment_size(seg_size)?;
        Ok(self.0 / seg_size)
    }

    /// The start of the segment holding this position.
    pub fn segment_start(self, seg_size: u64) -> Result<Lsn, SegmentSizeError> {
        check_segment_size(seg_size)?;
        Ok(Lsn(self.0 - self.0 % seg_size))
    }

    /// The offset of this position inside its segment (`XLogSegmentOffset`).
    pub fn segment_offset(self, seg_size: u64) -> Result<u64, SegmentSizeError> {
        check_segment_size(seg_size)?;
        Ok(self.0 % seg_size)
    }

    /// The name of the WAL file holding this position on `timeline`: `TTTTTTTTXXXXXXXXYYYYYYYY`
    /// (`XLogFileName`).
    pub fn wal_file_name(self, timeline: u32, seg_size: u64) -> Result<String, SegmentSizeError> {
        let seg = self.segment(seg_size)?;
        let per_id = 0x1_0000_0000 / seg_size;
        Ok(format!("{timeline:08X}{:08X}{:08X}", seg / per_id, seg % per_id))
    }

    /// `self + bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }

    /// The number of bytes from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_sub(self, earlier: Lsn) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }
}

impl fmt::Display for Lsn {
    /// `%X/%X`, as PostgreSQL 10-18 print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 as u32)
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    /// Accepts 1-8 hex digits per half, either case, zero-padded or not (`pg_lsn_in`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.chars().take(40).collect());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |h: &str| {
            if (1..=8).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                u32::from_str_radix(h, 16).ok()
            } else {
                None
            }
        };
        Ok(Lsn((u64::from(half(hi).ok_or_else(err)?) << 32) | u64::from(half(lo).ok_or_else(err)?)))
    }
}

// ---------------------------------------------------------------------------------------------
// Results of replication commands

/// A replication command's result set that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    /// Wrong number of rows.
    #[error("{command} returned {got} rows, expected {expected}")]
    Rows {
        /// The command.
        command: &'static str,
        /// Rows expected.
        expected: usize,
        /// Rows received.
        got: usize,
    },
    /// A column is missing.
    #[error("{command} result has no column \"{column}\"")]
    MissingColumn {
        /// The command.
        command: &'static str,
        /// The column.
        column: &'static str,
    },
    /// A column is NULL where a value is required.
    #[error("{command} returned NULL for \"{column}\"")]
    Null {
        /// The command.
        command: &'static str,
        /// The column.
        column: &'static str,
    },
    /// A value that does not parse.
    #[error("{command} returned an invalid \"{column}\": {value:?}")]
    Invalid {
        /// The command.
        command: &'static str,
        /// The column.
        column: &'static str,
        /// The value (truncated to 64 characters).
        value: String,
    },
}

/// Column access for one-row results, with errors naming the command.
struct Single<'a> {
    set: &'a ResultSet,
    command: &'static str,
}

impl<'a> Single<'a> {
    fn new(set: &'a ResultSet, command: &'static str) -> Result<Self, ResultError> {
        if set.rows.len() != 1 {
            return Err(ResultError::Rows { command, expected: 1, got: set.rows.len() });
        }
        Ok(Self { set, command })
    }

    fn bytes(&self, column: &'static str) -> Result<Option<&'a Bytes>, ResultError> {
        let i = self
            .set
            .description
            .index_of(column)
            .ok_or(ResultError::MissingColumn { command: self.command, column })?;
        Ok(self.set.rows[0].values()[i].as_ref())
    }

    fn text(&self, column: &'static str) -> Result<Option<String>, ResultError> {
        Ok(self.bytes(column)?.map(|b| String::from_utf8_lossy(b).into_owned()))
    }

    fn required(&self, column: &'static str) -> Result<String, ResultError> {
        self.text(column)?.ok_or(ResultError::Null { command: self.command, column })
    }

    fn parse<T: FromStr>(&self, column: &'static str, value: &str) -> Result<T, ResultError> {
        value.parse().map_err(|_| ResultError::Invalid {
            command: self.command,
            column,
            value: value.chars().take(64).collect(),
        })
    }

    fn timeline(&self, column: &'static str, value: &str) -> Result<u32, ResultError> {
        let tli: u32 = self.parse(column, value)?;
        if tli == 0 {
            return Err(ResultError::Invalid { command: self.command, column, value: value.to_owned() });
        }
        Ok(tli)
    }
}

/// The row of `IDENTIFY_SYSTEM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifySystem {
    /// The cluster's system identifier (`pg_control`).
    pub systemid: u64,
    /// The current timeline.
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlogpos: Lsn,
    /// The database (logical walsender), `None` for a physical one.
    pub dbname: Option<String>,
}

impl IdentifySystem {
    /// Reads the result set of `IDENTIFY_SYSTEM`.
    pub fn from_result(set: &ResultSet) -> Result<Self, ResultError> {
        let r = Single::new(set, "IDENTIFY_SYSTEM")?;
        let systemid = r.required("systemid")?;
        let timeline = r.required("timeline")?;
        let xlogpos = r.required("xlogpos")?;
        Ok(Self {
            systemid: r.parse("systemid", &systemid)?,
            timeline: r.timeline("timeline", &timeline)?,
            xlogpos: r.parse("xlogpos", &xlogpos)?,
            dbname: r.text("dbname")?,
        })
    }
}

/// The row of `SHOW name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Show {
    /// The column name (the setting's name).
    pub name: String,
    /// Its value, as text (`16MB`, `0700`, …).
    pub value: String,
}

impl Show {
    /// Reads the result set of `SHOW`.
    pub fn from_result(set: &ResultSet) -> Result<Self, ResultError> {
        Single::new(set, "SHOW")?;
        let Some(field) = set.description.fields.first().filter(|_| set.description.fields.len() == 1) else {
            return Err(ResultError::MissingColumn { command: "SHOW", column: "<setting>" });
        };
        let value = set.rows[0].values()[0]
            .as_ref()
            .ok_or(ResultError::Null { command: "SHOW", column: "<setting>" })?;
        Ok(Self { name: field.name.clone(), value: String::from_utf8_lossy(value).into_owned() })
    }

    /// A size setting such as `wal_segment_size` (`16MB`, `1GB`, `8kB`, or plain bytes) in bytes.
    pub fn size_bytes(&self) -> Option<u64> {
        let v = self.value.trim();
        let digits = v.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = v[..digits].parse().ok()?;
        let mult = match v[digits..].trim() {
            "" | "B" => 1,
            "kB" => 1 << 10,
            "MB" => 1 << 20,
            "GB" => 1 << 30,
            "TB" => 1 << 40,
            _ => return None,
        };
        n.checked_mul(mult)
    }
}

/// The row of `TIMELINE_HISTORY tli`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineHistory {
    /// The file name, e.g. `00000002.history`.
    pub filename: String,
    /// The file's bytes.
    pub content: Bytes,
}

impl TimelineHistory {
    /// Reads the result set of `TIMELINE_HISTORY`; the file name must be a plain
    /// `XXXXXXXX.history` name (it becomes a path in the backup).
    pub fn from_result(set: &ResultSet) -> Result<Self, ResultError> {
        let r = Single::new(set, "TIMELINE_HISTORY")?;
        let filename = r.required("filename")?;
        let ok = filename.len() == 16
            && filename.ends_with(".history")
            && filename[..8].bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(ResultError::Invalid { command: r.command, column: "filename", value: filename });
        }
        let content = r
            .bytes("content")?
            .cloned()
            .ok_or(ResultError::Null { command: r.command, column: "content" })?;
        Ok(Self { filename, content })
    }
}

/// The row of `CREATE_REPLICATION_SLOT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedSlot {
    /// The slot's name.
    pub slot_name: String,
    /// `consistent_point` (`0/0` for a physical slot).
    pub consistent_point: Lsn,
    /// The exported snapshot (logical slots only).
    pub snapshot_name: Option<String>,
    /// The output plugin (logical slots only).
    pub output_plugin: Option<String>,
}

impl CreatedSlot {
    /// Reads the result set of `CREATE_REPLICATION_SLOT`.
    pub fn from_result(set: &ResultSet) -> Result<Self, ResultError> {
        let r = Single::new(set, "CREATE_REPLICATION_SLOT")?;
        let point = r.required("consistent_point")?;
        Ok(Self {
            slot_name: r.required("slot_name")?,
            consistent_point: r.parse("consistent_point", &point)?,
            snapshot_name: r.text("snapshot_name")?,
            output_plugin: r.text("output_plugin")?,
        })
    }
}

/// The row of `READ_REPLICATION_SLOT` (PG 15+) for an existing slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// `physical` (a logical slot makes the command fail).
    pub slot_type: String,
    /// The slot's `restart_lsn`, NULL when it has none yet.
    pub restart_lsn: Option<Lsn>,
    /// The timeline of `restart_lsn`.
    pub restart_tli: Option<u32>,
}

impl SlotInfo {
    /// Reads the result set of `READ_REPLICATION_SLOT`: `None` when the slot does not exist (the
    /// server returns one row of NULLs, not an error).
    pub fn from_result(set: &ResultSet) -> Result<Option<Self>, ResultError> {
        let r = Single::new(set, "READ_REPLICATION_SLOT")?;
        let Some(slot_type) = r.text("slot_type")? else {
            return Ok(None);
        };
        let restart_lsn = match r.text("restart_lsn")? {
            Some(v) => Some(r.parse("restart_lsn", &v)?),
            None => None,
        };
        let restart_tli = match r.text("restart_tli")? {
            Some(v) => Some(r.timeline("restart_tli", &v)?),
            None => None,
        };
        Ok(Some(Self { slot_type, restart_lsn, restart_tli }))
    }
}

// ---------------------------------------------------------------------------------------------
// Time

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 00:00:00 UTC).
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A `TimestampTz` on the wire: microseconds since 2000-01-01 00:00:00 UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// Converts a time the caller read from its clock (saturating far outside ±292 000 years).
    pub fn from_system_time(t: SystemTime) -> Self {
        let unix_micros = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m),
        };
        Self(unix_micros.saturating_sub(PG_EPOCH_OFFSET_MICROS))
    }

    /// Converts back to a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        let unix = i128::from(self.0) + i128::from(PG_EPOCH_OFFSET_MICROS);
        let d = Duration::from_micros(unix.unsigned_abs() as u64);
        if unix >= 0 { UNIX_EPOCH + d } else { UNIX_EPOCH - d }
    }
}

// ---------------------------------------------------------------------------------------------
// CopyBoth sub-messages of physical streaming

/// `w` XLogData: a piece of WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XLogData {
    /// Where `data` starts in the WAL.
    pub wal_start: Lsn,
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// The server's clock when sending.
    pub send_time: PgTimestamp,
    /// The WAL bytes (a zero-copy slice of the CopyData).
    pub data: Bytes,
}

/// `k` primary keepalive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// The server's clock when sending.
    pub send_time: PgTimestamp,
    /// The server wants a standby status update at once (or it may time out the connection).
    pub reply_requested: bool,
}

/// A CopyData payload received while streaming WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// `w`
    XLogData(XLogData),
    /// `k`
    PrimaryKeepalive(PrimaryKeepalive),
}

/// A CopyData payload that is not a valid streaming message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationMessageError {
    /// An empty CopyData.
    #[error("empty CopyData in the replication stream")]
    Empty,
    /// A type byte other than `w` or `k`.
    #[error("unknown replication message type '{c}' (0x{b:02x})", b = .0, c = char::from(*.0).escape_default())]
    UnknownType(u8),
    /// A message of the wrong length.
    #[error("replication message '{}' is {len} bytes long, expected {expected}", char::from(*kind))]
    Length {
        /// The type byte.
        kind: u8,
        /// Its length, type byte included.
        len: usize,
        /// The expected length (a minimum for `w`).
        expected: &'static str,
    },
    /// A reply-requested byte other than 0 or 1.
    #[error("keepalive reply-requested flag is {0}, expected 0 or 1")]
    ReplyFlag(u8),
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl ReplicationMessage {
    /// Parses a CopyData payload; `w` data stays a slice of `payload`.
    pub fn parse(payload: Bytes) -> Result<Self, ReplicationMessageError> {
        let kind = *payload.first().ok_or(ReplicationMessageError::Empty)?;
        match kind {
            b'w' => {
                if payload.len() < 25 {
                    return Err(ReplicationMessageError::Length {
                        kind,
                        len: payload.len(),
                        expected: "at least 25",
                    });
                }
                Ok(Self::XLogData(XLogData {
                    wal_start: Lsn(be_u64(&payload[1..])),
                    wal_end: Lsn(be_u64(&payload[9..])),
                    send_time: PgTimestamp(be_u64(&payload[17..]) as i64),
                    data: payload.slice(25..),
                }))
            }
            b'k' => {
                if payload.len() != 18 {
                    return Err(ReplicationMessageError::Length { kind, len: payload.len(), expected: "18" });
                }
                let reply_requested = match payload[17] {
                    0 => false,
                    1 => true,
                    f => return Err(ReplicationMessageError::ReplyFlag(f)),
                };
                Ok(Self::PrimaryKeepalive(PrimaryKeepalive {
                    wal_end: Lsn(be_u64(&payload[1..])),
                    send_time: PgTimestamp(be_u64(&payload[9..]) as i64),
                    reply_requested,
                }))
            }
            other => Err(ReplicationMessageError::UnknownType(other)),
        }
    }
}

impl ReplicationMessage {
    /// Appends the whole CopyData message (`d`, length, payload) that [`ReplicationMessage::parse`]
    /// reads back: what a server sends (used by test peers, and by the `frame` fuzz target to
    /// check that parsing loses nothing).
    pub fn encode(&self, out: &mut BytesMut) {
        let payload_len = match self {
            Self::XLogData(x) => 25 + x.data.len(),
            Self::PrimaryKeepalive(_) => 18,
        };
        out.reserve(5 + payload_len);
        out.put_u8(b'd');
        // A payload past i32::MAX cannot be framed; the framer's limit (1 GiB) keeps parsed
        // messages far below it.
        out.put_i32(i32::try_from(4 + payload_len).unwrap_or(i32::MAX));
        match self {
            Self::XLogData(x) => {
                out.put_u8(b'w');
                out.put_u64(x.wal_start.0);
                out.put_u64(x.wal_end.0);
                out.put_i64(x.send_time.0);
                out.put_slice(&x.data);
            }
            Self::PrimaryKeepalive(k) => {
                out.put_u8(b'k');
                out.put_u64(k.wal_end.0);
                out.put_i64(k.send_time.0);
                out.put_u8(u8::from(k.reply_requested));
            }
        }
    }
}

/// `r` standby status update, sent by the client inside CopyData.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// Last WAL byte + 1 received and written to disk.
    pub write: Lsn,
    /// Last WAL byte + 1 flushed to disk (send `Lsn::INVALID` without a slot, as pg_basebackup
    /// does, so as not to become a synchronous standby candidate).
    pub flush: Lsn,
    /// Last WAL byte + 1 applied (`Lsn::INVALID` for a backup).
    pub apply: Lsn,
    /// The client's clock, read by the caller.
    pub client_time: PgTimestamp,
    /// Ask the server to reply at once.
    pub reply_requested: bool,
}

impl StandbyStatusUpdate {
    /// Length of the `r` payload.
    pub const LEN: usize = 34;

    /// Appends the whole CopyData message (`d`, length, `r` payload) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(5 + Self::LEN);
        out.put_u8(b'd');
        out.put_i32(4 + Self::LEN as i32);
        out.put_u8(b'r');
        out.put_u64(self.write.0);
        out.put_u64(self.flush.0);
        out.put_u64(self.apply.0);
        out.put_i64(self.client_time.0);
        out.put_u8(u8::from(self.reply_requested));
    }
}

#[cfg(test)]
mod tests;
