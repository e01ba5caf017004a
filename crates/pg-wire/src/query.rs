//! Simple-query results, as a sans-IO state machine.
//!
//! Implements the client side of
//! <https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-SIMPLE-QUERY> and of
//! the COPY sub-protocols it can switch to (CopyOut, CopyBoth for `START_REPLICATION`, CopyIn
//! for `UPLOAD_MANIFEST`).
//!
//! After writing a `Query` with [`frontend::query`](crate::message::frontend::query), feed every
//! backend frame to [`Query::handle`] until it returns [`QueryEvent::Ready`]. The machine checks
//! the order of messages (no DataRow before its RowDescription, no row with the wrong number of
//! columns, no CopyData outside a COPY) and hands out values and CopyData payloads as zero-copy
//! [`Bytes`]. An ErrorResponse is an event, not an error: the query failed but the connection
//! stays usable until the ReadyForQuery that follows.
//!
//! [`Collector`] gathers the events of a small query (catalog queries, replication commands)
//! into [`ResultSet`]s, with a byte budget.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::DbError;
use crate::frame::Frame;
use crate::message::{
    BackendMessage, CopyResponse, MessageError, Notification, RowDescription, TransactionStatus,
};

/// A protocol violation in a query's responses. The connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A malformed message.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A message that is not allowed at this point.
    #[error("unexpected {message} message {state}")]
    Unexpected {
        /// The message's name.
        message: &'static str,
        /// Where we were.
        state: &'static str,
    },
    /// A DataRow whose column count differs from its RowDescription's.
    #[error("DataRow has {got} columns but the RowDescription announced {expected}")]
    ColumnCount {
        /// Columns announced.
        expected: usize,
        /// Columns received.
        got: usize,
    },
    /// A frame after the final ReadyForQuery.
    #[error("message {0} after ReadyForQuery ended the query")]
    AfterReady(&'static str),
}

/// One row, with its description shared by all rows of the result set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    description: Arc<RowDescription>,
    values: Vec<Option<Bytes>>,
}

/// A text accessor on a value that is not valid UTF-8, or a column that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// No column at that index / with that name.
    #[error("no column {0} in the result")]
    NoColumn(String),
    /// The value is not UTF-8.
    #[error("column {0} is not valid UTF-8")]
    NotUtf8(String),
}

impl Row {
    /// Builds a row (the query machine checks the column count; this does too).
    pub fn new(description: Arc<RowDescription>, values: Vec<Option<Bytes>>) -> Result<Self, QueryError> {
        if description.fields.len() != values.len() {
            return Err(QueryError::ColumnCount { expected: description.fields.len(), got: values.len() });
        }
        Ok(Self { description, values })
    }

    /// The columns' descriptions.
    pub fn description(&self) -> &Arc<RowDescription> {
        &self.description
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The raw values.
    pub fn values(&self) -> &[Option<Bytes>] {
        &self.values
    }

    /// Consumes the row, returning its values.
    pub fn into_values(self) -> Vec<Option<Bytes>> {
        self.values
    }

    /// The raw value of column `i` (`None` for NULL).
    pub fn get_bytes(&self, i: usize) -> Result<Option<&Bytes>, RowError> {
        self.values.get(i).map(Option::as_ref).ok_or_else(|| RowError::NoColumn(i.to_string()))
    }

    /// Column `i` as text (`None` for NULL).
    pub fn get(&self, i: usize) -> Result<Option<&str>, RowError> {
        match self.get_bytes(i)? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b).map(Some).map_err(|_| RowError::NotUtf8(self.column_name(i))),
        }
    }

    /// The column named `name` as text (`None` for NULL).
    pub fn get_by_name(&self, name: &str) -> Result<Option<&str>, RowError> {
        let i = self.description.index_of(name).ok_or_else(|| RowError::NoColumn(format!("\"{name}\"")))?;
        self.get(i)
    }

    fn column_name(&self, i: usize) -> String {
        self.description.fields.get(i).map_or_else(|| i.to_string(), |f| format!("\"{}\"", f.name))
    }
}

/// What [`Query::handle`] reports, one event per frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryEvent {
    /// A result set starts.
    RowDescription(Arc<RowDescription>),
    /// A row of the current result set.
    Row(Row),
    /// A statement finished, with its command tag.
    CommandComplete(String),
    /// The query string was empty.
    EmptyQuery,
    /// The query failed; ReadyForQuery follows.
    Error(DbError),
    /// A notice or warning.
    Notice(DbError),
    /// A run-time parameter changed (e.g. after `SET application_name`).
    ParameterStatus {
        /// The parameter name.
        name: String,
        /// Its new value.
        value: String,
    },
    /// A LISTEN/NOTIFY notification.
    Notification(Notification),
    /// CopyOutResponse: CopyData follows until CopyDone.
    CopyOut(CopyResponse),
    /// CopyBothResponse (`START_REPLICATION`): CopyData both ways until CopyDone.
    CopyBoth(CopyResponse),
    /// CopyInResponse: the client must now send CopyData then CopyDone or CopyFail.
    CopyIn(CopyResponse),
    /// A CopyData payload, not copied.
    CopyData(Bytes),
    /// The server's CopyDone.
    CopyDone,
    /// ReadyForQuery: the query is over; the machine is finished.
    Ready(TransactionStatus),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Between statements: no RowDescription in force.
    Idle,
    /// Rows of a result set.
    Rows,
    /// Inside a CopyOut or CopyBoth.
    CopyOut,
    /// Inside a CopyIn (the server sends nothing until our CopyDone except errors/notices).
    CopyIn,
    /// After ReadyForQuery.
    Done,
}

/// The response state machine of one simple `Query`.
#[derive(Debug)]
pub struct Query {
    mode: Mode,
    description: Option<Arc<RowDescription>>,
}

impl Default for Query {
    fn default() -> Self {
        Self::new()
    }
}

impl Query {
    /// A machine for the responses to a `Query` just sent.
    pub fn new() -> Self {
        Self { mode: Mode::Idle, description: None }
    }

    /// True once ReadyForQuery has been seen.
    pub fn is_done(&self) -> bool {
        self.mode == Mode::Done
    }

    /// True while in a CopyOut / CopyBoth / CopyIn.
    pub fn in_copy(&self) -> bool {
        matches!(self.mode, Mode::CopyOut | Mode::CopyIn)
    }

    fn state(&self) -> &'static str {
        match self.mode {
            Mode::Idle => "between statements",
            Mode::Rows => "inside a result set",
            Mode::CopyOut => "inside a COPY from the server",
            Mode::CopyIn => "inside a COPY to the server",
            Mode::Done => "after ReadyForQuery",
        }
    }

    /// Handles one backend frame.
    pub fn handle(&mut self, frame: Frame) -> Result<QueryEvent, QueryError> {
        let msg = BackendMessage::parse(frame)?;
        if self.mode == Mode::Done {
            return Err(QueryError::AfterReady(msg.name()));
        }
        let unexpected =
            |m: &BackendMessage, s: &Self| QueryError::Unexpected { message: m.name(), state: s.state() };
        Ok(match msg {
            // Allowed anywhere (protocol-flow.html#PROTOCOL-ASYNC).
            BackendMessage::NoticeResponse(n) => QueryEvent::Notice(n),
            BackendMessage::ParameterStatus { name, value } => QueryEvent::ParameterStatus { name, value },
            BackendMessage::NotificationResponse(n) => QueryEvent::Notification(n),
            // An error ends any statement or COPY; ReadyForQuery follows.
            BackendMessage::ErrorResponse(e) => {
                self.mode = Mode::Idle;
                self.description = None;
                QueryEvent::Error(e)
            }
            BackendMessage::ReadyForQuery(s) => {
                if self.in_copy() {
                    return Err(unexpected(&BackendMessage::ReadyForQuery(s), self));
                }
                self.mode = Mode::Done;
                self.description = None;
                QueryEvent::Ready(s)
            }
            m @ BackendMessage::CopyData(_) if self.mode != Mode::CopyOut => {
                return Err(unexpected(&m, self));
            }
            BackendMessage::CopyData(b) => QueryEvent::CopyData(b),
            BackendMessage::CopyDone if self.mode == Mode::CopyOut => {
                self.mode = Mode::Idle;
                QueryEvent::CopyDone
            }
            m if self.in_copy() => return Err(unexpected(&m, self)),
            BackendMessage::RowDescription(d) => {
                let d = Arc::new(d);
                self.description = Some(d.clone());
                self.mode = Mode::Rows;
                QueryEvent::RowDescription(d)
            }
            BackendMessage::DataRow(r) => {
                let Some(d) = self.description.clone().filter(|_| self.mode == Mode::Rows) else {
                    return Err(unexpected(&BackendMessage::DataRow(r), self));
                };
                QueryEvent::Row(Row::new(d, r.columns)?)
            }
            BackendMessage::CommandComplete(tag) => {
                self.mode = Mode::Idle;
                self.description = None;
                QueryEvent::CommandComplete(tag)
            }
            BackendMessage::EmptyQueryResponse if self.mode == Mode::Idle => QueryEvent::EmptyQuery,
            m @ (BackendMessage::CopyOutResponse(_)
            | BackendMessage::CopyBothResponse(_)
            | BackendMessage::CopyInResponse(_))
                if self.mode == Mode::Rows =>
            {
                return Err(unexpected(&m, self));
            }
            BackendMessage::CopyOutResponse(c) => {
                self.mode = Mode::CopyOut;
                QueryEvent::CopyOut(c)
            }
            BackendMessage::CopyBothResponse(c) => {
                self.mode = Mode::CopyOut;
                QueryEvent::CopyBoth(c)
            }
            BackendMessage::CopyInResponse(c) => {
                self.mode = Mode::CopyIn;
                QueryEvent::CopyIn(c)
            }
            m => return Err(unexpected(&m, self)),
        })
    }

    /// Tells the machine that the client sent CopyDone or CopyFail to end a CopyIn (the server
    /// then answers with CommandComplete or ErrorResponse).
    pub fn client_copy_done(&mut self) {
        if self.mode == Mode::CopyIn {
            self.mode = Mode::Idle;
        }
    }
}

/// A whole result set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultSet {
    /// Its columns.
    pub description: Arc<RowDescription>,
    /// Its rows.
    pub rows: Vec<Row>,
    /// The CommandComplete tag, when one arrived (an error can cut a result set short).
    pub tag: Option<String>,
}

/// Why [`Collector`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectError {
    /// A protocol violation.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The rows exceed the byte budget given to [`Collector::new`].
    #[error("the query returned more than {limit} bytes of rows; refusing to buffer them")]
    TooLarge {
        /// The budget.
        limit: usize,
    },
    /// The query switched to COPY, which a collector does not buffer.
    #[error("the query started a COPY; use Query directly to stream it")]
    Copy,
}

/// Everything a small query returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// The result sets, in order (only statements that returned rows).
    pub sets: Vec<ResultSet>,
    /// CommandComplete tags of all statements, in order.
    pub tags: Vec<String>,
    /// The error that ended the query, if it failed.
    pub error: Option<DbError>,
    /// Notices received.
    pub notices: Vec<DbError>,
    /// Parameters that changed.
    pub parameters: Vec<(String, String)>,
    /// The final transaction status.
    pub status: Option<TransactionStatus>,
}

impl Collected {
    /// The single result set of a command that returns exactly one (IDENTIFY_SYSTEM, SHOW, …),
    /// or the server error.
    pub fn single(self) -> Result<ResultSet, SingleError> {
        if let Some(e) = self.error {
            return Err(SingleError::Server(Box::new(e)));
        }
        let n = self.sets.len();
        let mut sets = self.sets.into_iter();
        match (sets.next(), n) {
            (Some(s), 1) => Ok(s),
            _ => Err(SingleError::Count(n)),
        }
    }
}

/// Why [`Collected::single`] found no single result set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SingleError {
    /// The query failed on the server.
    #[error("{0}")]
    Server(Box<DbError>),
    /// Zero or several result sets.
    #[error("expected exactly one result set, got {0}")]
    Count(usize),
}

/// Gathers a small query's events into a [`Collected`], refusing more than `limit` bytes of
/// row data (values plus 4 bytes per column).
#[derive(Debug)]
pub struct Collector {
    query: Query,
    limit: usize,
    used: usize,
    result: Collected,
}

impl Collector {
    /// A collector with a byte budget for row data.
    pub fn new(limit: usize) -> Self {
        Self { query: Query::new(), limit, used: 0, result: Collected::default() }
    }

    /// Handles one frame; returns the result once ReadyForQuery arrives.
    pub fn handle(&mut self, frame: Frame) -> Result<Option<Collected>, CollectError> {
        match self.query.handle(frame)? {
            QueryEvent::RowDescription(d) => {
                self.result.sets.push(ResultSet { description: d, rows: Vec::new(), tag: None })
            }
            QueryEvent::Row(r) => {
                self.used += r.values().iter().map(|v| 4 + v.as_ref().map_or(0, Bytes::len)).sum::<usize>();
                if self.used > self.limit {
                    return Err(CollectError::TooLarge { limit: self.limit });
                }
                // The query machine guarantees a RowDescription came first.
                if let Some(set) = self.result.sets.last_mut() {
                    set.rows.push(r);
                }
            }
            QueryEvent::CommandComplete(tag) => {
                if let Some(set) = self.result.sets.last_mut().filter(|s| s.tag.is_none()) {
                    set.tag = Some(tag.clone());
                }
                self.result.tags.push(tag);
            }
            QueryEvent::EmptyQuery => {}
            QueryEvent::Error(e) => self.result.error = Some(e),
            QueryEvent::Notice(n) => self.result.notices.push(n),
            QueryEvent::ParameterStatus { name, value } => self.result.parameters.push((name, value)),
            QueryEvent::Notification(_) => {}
            QueryEvent::CopyOut(_) | QueryEvent::CopyBoth(_) | QueryEvent::CopyIn(_) => {
                return Err(CollectError::Copy);
            }
            QueryEvent::CopyData(_) | QueryEvent::CopyDone => return Err(CollectError::Copy),
            QueryEvent::Ready(s) => {
                self.result.status = Some(s);
                return Ok(Some(std::mem::take(&mut self.result)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
