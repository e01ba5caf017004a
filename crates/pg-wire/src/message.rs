//! Typed backend messages, parsed strictly from a [`Frame`].
//!
//! Implements the layouts of <https://www.postgresql.org/docs/current/protocol-message-formats.html>
//! (server side: `src/backend/libpq/pqformat.c` and the `pq_send*` callers). Every length and
//! count read from a body is checked against the bytes actually present *before* anything is
//! allocated, and trailing bytes are an error: a malformed body yields a [`MessageError`] naming
//! the message and the offset in its body, never a panic.
//!
//! Strings (parameter names, column names, command tags) are in the server encoding and need
//! not be UTF-8; they are converted lossily. Column values stay raw [`Bytes`] (zero-copy slices
//! of the frame).
//!
//! [`frontend`] holds the encoders of client messages, wrapping postgres-protocol's and adding
//! what it lacks (protocol 3.2 cancel keys, checked lengths).

use bytes::Bytes;

use crate::error::{DbError, ErrorFieldsError};
use crate::frame::Frame;

/// A body that does not match its message's layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The body is shorter or longer than its layout, or a field holds an impossible value.
    #[error("malformed {message} message at body offset {offset}: {reason}")]
    Malformed {
        /// The message's name, e.g. `DataRow`.
        message: &'static str,
        /// Offset in the body (after tag and length) where the problem was found.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// An `ErrorResponse` or `NoticeResponse` whose field list is malformed.
    #[error("malformed {message} message: {error}")]
    ErrorFields {
        /// `ErrorResponse` or `NoticeResponse`.
        message: &'static str,
        /// The field-level problem.
        error: ErrorFieldsError,
    },
    /// A tag no backend message uses.
    #[error("unknown backend message tag '{}' (0x{tag:02x})", char::from(*tag).escape_default())]
    UnknownTag {
        /// The tag byte.
        tag: u8,
    },
    /// An authentication request code that no PostgreSQL version sends.
    #[error("unknown authentication request code {code}")]
    UnknownAuthCode {
        /// The code.
        code: i32,
    },
    /// An authentication method this client does not implement (GSSAPI, SSPI, Kerberos, SCM).
    #[error(
        "the server requested {method} authentication (code {code}), which this client does not \
         support; use password or SCRAM authentication for this role in pg_hba.conf"
    )]
    UnsupportedAuth {
        /// The authentication request code.
        code: i32,
        /// The method's name.
        method: &'static str,
    },
}

/// Reads a body from front to back, naming the message in every error.
struct Reader<'a> {
    body: &'a Bytes,
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(body: &'a Bytes, message: &'static str) -> Self {
        Self { body, pos: 0, message }
    }

    fn err(&self, reason: &'static str) -> MessageError {
        MessageError::Malformed { message: self.message, offset: self.pos, reason }
    }

    fn remaining(&self) -> usize {
        self.body.len() - self.pos
    }

    fn take(&mut self, n: usize, reason: &'static str) -> Result<&'a [u8], MessageError> {
        if self.remaining() < n {
            return Err(self.err(reason));
        }
        let s = &self.body[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn bytes(&mut self, n: usize, reason: &'static str) -> Result<Bytes, MessageError> {
        if self.remaining() < n {
            return Err(self.err(reason));
        }
        let b = self.body.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, MessageError> {
        Ok(self.take(1, "body too short for a byte")?[0])
    }

    fn i16(&mut self) -> Result<i16, MessageError> {
        let s = self.take(2, "body too short for an Int16")?;
        Ok(i16::from_be_bytes([s[0], s[1]]))
    }

    fn i32(&mut self) -> Result<i32, MessageError> {
        let s = self.take(4, "body too short for an Int32")?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u32(&mut self) -> Result<u32, MessageError> {
        Ok(self.i32()? as u32)
    }

    /// A NUL-terminated string, without its terminator.
    fn cstr(&mut self) -> Result<&'a [u8], MessageError> {
        let rest = &self.body[self.pos..];
        let nul = rest.iter().position(|&b| b == 0).ok_or_else(|| self.err("unterminated string"))?;
        self.pos += nul + 1;
        Ok(&rest[..nul])
    }

    fn string(&mut self) -> Result<String, MessageError> {
        Ok(String::from_utf8_lossy(self.cstr()?).into_owned())
    }

    fn rest(&mut self) -> Bytes {
        let b = self.body.slice(self.pos..);
        self.pos = self.body.len();
        b
    }

    fn finish(&self) -> Result<(), MessageError> {
        if self.remaining() != 0 {
            return Err(self.err("unexpected bytes after the end of the message"));
        }
        Ok(())
    }
}

/// An `R` authentication request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication {
    /// Code 0: authentication succeeded.
    Ok,
    /// Code 3: send the password in clear text.
    CleartextPassword,
    /// Code 5: send `md5(md5(password ‖ user) ‖ salt)`.
    Md5Password([u8; 4]),
    /// Code 10: SASL, with the mechanisms the server offers, in its order of preference.
    Sasl(Vec<String>),
    /// Code 11: SASL challenge data.
    SaslContinue(Bytes),
    /// Code 12: SASL outcome data (for SCRAM, `v=<server signature>`).
    SaslFinal(Bytes),
}

impl Authentication {
    fn parse(body: &Bytes) -> Result<Self, MessageError> {
        let mut r = Reader::new(body, "Authentication");
        let code = r.i32()?;
        let auth = match code {
            0 => Self::Ok,
            3 => Self::CleartextPassword,
            5 => {
                let s = r.take(4, "MD5 salt shorter than 4 bytes")?;
                Self::Md5Password([s[0], s[1], s[2], s[3]])
            }
            10 => {
                let mut mechs = Vec::new();
                loop {
                    let m = r.cstr()?;
                    if m.is_empty() {
                        break;
                    }
                    mechs.push(String::from_utf8_lossy(m).into_owned());
                }
                Self::Sasl(mechs)
            }
            11 => Self::SaslContinue(r.rest()),
            12 => Self::SaslFinal(r.rest()),
            2 => return Err(MessageError::UnsupportedAuth { code, method: "Kerberos V5" }),
            6 => return Err(MessageError::UnsupportedAuth { code, method: "SCM credential" }),
            7 | 8 => return Err(MessageError::UnsupportedAuth { code, method: "GSSAPI" }),
            9 => return Err(MessageError::UnsupportedAuth { code, method: "SSPI" }),
            code => return Err(MessageError::UnknownAuthCode { code }),
        };
        r.finish()?;
        Ok(auth)
    }
}

/// `K` BackendKeyData: what a CancelRequest must quote.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendKeyData {
    /// The backend's process id.
    pub pid: i32,
    /// The secret key: 4 bytes in protocol 3.0, 4 to 256 bytes in protocol 3.2 (PG 18).
    pub key: Bytes,
}

impl std::fmt::Debug for BackendKeyData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a credential (it lets anyone cancel our queries): keep it out of logs.
        f.debug_struct("BackendKeyData").field("pid", &self.pid).field("key_len", &self.key.len()).finish()
    }
}

impl BackendKeyData {
    /// The protocol 3.0 key as an `i32`, when the key is 4 bytes long.
    pub fn key_i32(&self) -> Option<i32> {
        <[u8; 4]>::try_from(&self.key[..]).ok().map(i32::from_be_bytes)
    }
}

/// The `Z` ReadyForQuery status byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block.
    Failed,
}

/// One column of a `T` RowDescription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDescription {
    /// The column name.
    pub name: String,
    /// The table's OID, or 0.
    pub table_oid: u32,
    /// The column's attribute number, or 0.
    pub column_id: i16,
    /// The data type's OID (25 = text, 23 = int4, 20 = int8).
    pub type_oid: u32,
    /// The type's size (`pg_type.typlen`), negative for variable width.
    pub type_size: i16,
    /// The type modifier (`pg_attribute.atttypmod`).
    pub type_modifier: i32,
    /// 0 = text, 1 = binary.
    pub format: i16,
}

/// `T` RowDescription.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RowDescription {
    /// The columns, in order.
    pub fields: Vec<FieldDescription>,
}

impl RowDescription {
    /// Smallest encoding of one field: an empty name's NUL plus 18 bytes of fixed fields.
    const MIN_FIELD_LEN: usize = 19;

    fn parse(body: &Bytes) -> Result<Self, MessageError> {
        let mut r = Reader::new(body, "RowDescription");
        let count = r.i16()?;
        if count < 0 {
            return Err(r.err("negative field count"));
        }
        let count = count as usize;
        if count * Self::MIN_FIELD_LEN > r.remaining() {
            return Err(r.err("field count larger than the body can hold"));
        }
        let mut fields = Vec::with_capacity(count);
        for _ in 0..count {
            fields.push(FieldDescription {
                name: r.string()?,
                table_oid: r.u32()?,
                column_id: r.i16()?,
                type_oid: r.u32()?,
                type_size: r.i16()?,
                type_modifier: r.i32()?,
                format: r.i16()?,
            });
        }
        r.finish()?;
        Ok(Self { fields })
    }

    /// The index of the column with this name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// `D` DataRow: each column's raw value (a zero-copy slice of the frame), `None` for NULL.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DataRow {
    /// The column values in order.
    pub columns: Vec<Option<Bytes>>,
}

impl DataRow {
    fn parse(body: &Bytes) -> Result<Self, MessageError> {
        let mut r = Reader::new(body, "DataRow");
        let count = r.i16()?;
        if count < 0 {
            return Err(r.err("negative column count"));
        }
        let count = count as usize;
        // Each column has at least its Int32 length.
        if count * 4 > r.remaining() {
            return Err(r.err("column count larger than the body can hold"));
        }
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.i32()?;
            columns.push(match len {
                -1 => None,
                n if n < 0 => return Err(r.err("negative column length other than -1 (NULL)")),
                n => Some(r.bytes(n as usize, "column length beyond the end of the message")?),
            });
        }
        r.finish()?;
        Ok(Self { columns })
    }
}

/// The body of `H` CopyOutResponse, `G` CopyInResponse and `W` CopyBothResponse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyResponse {
    /// Overall format: 0 = text, 1 = binary.
    pub format: u8,
    /// Per-column formats (0 or 1); empty for replication streams.
    pub column_formats: Vec<i16>,
}

impl CopyResponse {
    fn parse(body: &Bytes, message: &'static str) -> Result<Self, MessageError> {
        let mut r = Reader::new(body, message);
        let format = r.u8()?;
        if format > 1 {
            return Err(r.err("overall format is neither 0 (text) nor 1 (binary)"));
        }
        let count = r.i16()?;
        if count < 0 {
            return Err(r.err("negative column count"));
        }
        let count = count as usize;
        if count * 2 != r.remaining() {
            return Err(r.err("column count does not match the body length"));
        }
        let mut column_formats = Vec::with_capacity(count);
        for _ in 0..count {
            let f = r.i16()?;
            if !(0..=1).contains(&f) {
                return Err(r.err("column format is neither 0 (text) nor 1 (binary)"));
            }
            column_formats.push(f);
        }
        r.finish()?;
        Ok(Self { format, column_formats })
    }
}

/// `v` NegotiateProtocolVersion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiateProtocolVersion {
    /// Newest minor protocol version the server supports for the requested major.
    pub newest_minor: i32,
    /// Protocol options (`_pq_.*`) the server did not recognise.
    pub unrecognized: Vec<String>,
}

/// `A` NotificationResponse (LISTEN/NOTIFY; logical walsenders and normal sessions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The notifying backend's process id.
    pub pid: i32,
    /// The channel name.
    pub channel: String,
    /// The payload.
    pub payload: String,
}

/// A parsed backend message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendMessage {
    /// `R`
    Authentication(Authentication),
    /// `S` ParameterStatus.
    ParameterStatus {
        /// The parameter name, e.g. `server_version`.
        name: String,
        /// Its value.
        value: String,
    },
    /// `K`
    BackendKeyData(BackendKeyData),
    /// `Z`
    ReadyForQuery(TransactionStatus),
    /// `T`
    RowDescription(RowDescription),
    /// `D`
    DataRow(DataRow),
    /// `C` CommandComplete with its tag, e.g. `SELECT 1` or `IDENTIFY_SYSTEM`.
    CommandComplete(String),
    /// `I`
    EmptyQueryResponse,
    /// `H`
    CopyOutResponse(CopyResponse),
    /// `G`
    CopyInResponse(CopyResponse),
    /// `W`
    CopyBothResponse(CopyResponse),
    /// `d`, the payload as a zero-copy slice of the frame.
    CopyData(Bytes),
    /// `c`
    CopyDone,
    /// `E`
    ErrorResponse(DbError),
    /// `N`
    NoticeResponse(DbError),
    /// `v`
    NegotiateProtocolVersion(NegotiateProtocolVersion),
    /// `A`
    NotificationResponse(Notification),
}

fn empty(body: &Bytes, message: &'static str) -> Result<(), MessageError> {
    Reader::new(body, message).finish()
}

impl BackendMessage {
    /// Parses one frame. Takes the frame by value so that `DataRow` and `CopyData` can hand out
    /// slices of its body without copying.
    pub fn parse(frame: Frame) -> Result<Self, MessageError> {
        let body = &frame.body;
        Ok(match frame.tag {
            b'R' => Self::Authentication(Authentication::parse(body)?),
            b'S' => {
                let mut r = Reader::new(body, "ParameterStatus");
                let (name, value) = (r.string()?, r.string()?);
                r.finish()?;
                Self::ParameterStatus { name, value }
            }
            b'K' => {
                let mut r = Reader::new(body, "BackendKeyData");
                let pid = r.i32()?;
                let n = r.remaining();
                if !(4..=256).contains(&n) {
                    return Err(r.err("secret key is not 4 to 256 bytes long"));
                }
                Self::BackendKeyData(BackendKeyData { pid, key: r.rest() })
            }
            b'Z' => {
                let mut r = Reader::new(body, "ReadyForQuery");
                let status = match r.u8()? {
                    b'I' => TransactionStatus::Idle,
                    b'T' => TransactionStatus::InTransaction,
                    b'E' => TransactionStatus::Failed,
                    _ => return Err(Reader { pos: 0, ..r }.err("unknown transaction status")),
                };
                r.finish()?;
                Self::ReadyForQuery(status)
            }
            b'T' => Self::RowDescription(RowDescription::parse(body)?),
            b'D' => Self::DataRow(DataRow::parse(body)?),
            b'C' => {
                let mut r = Reader::new(body, "CommandComplete");
                let tag = r.string()?;
                r.finish()?;
                Self::CommandComplete(tag)
            }
            b'I' => {
                empty(body, "EmptyQueryResponse")?;
                Self::EmptyQueryResponse
            }
            b'H' => Self::CopyOutResponse(CopyResponse::parse(body, "CopyOutResponse")?),
            b'G' => Self::CopyInResponse(CopyResponse::parse(body, "CopyInResponse")?),
            b'W' => Self::CopyBothResponse(CopyResponse::parse(body, "CopyBothResponse")?),
            b'd' => Self::CopyData(frame.body),
            b'c' => {
                empty(body, "CopyDone")?;
                Self::CopyDone
            }
            b'E' => Self::ErrorResponse(
                DbError::parse(body)
                    .map_err(|error| MessageError::ErrorFields { message: "ErrorResponse", error })?,
            ),
            b'N' => Self::NoticeResponse(
                DbError::parse(body)
                    .map_err(|error| MessageError::ErrorFields { message: "NoticeResponse", error })?,
            ),
            b'v' => {
                let mut r = Reader::new(body, "NegotiateProtocolVersion");
                let newest_minor = r.i32()?;
                let count = r.i32()?;
                if count < 0 {
                    return Err(r.err("negative option count"));
                }
                // Each option name takes at least its NUL.
                if count as usize > r.remaining() {
                    return Err(r.err("option count larger than the body can hold"));
                }
                let mut unrecognized = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    unrecognized.push(r.string()?);
                }
                r.finish()?;
                Self::NegotiateProtocolVersion(NegotiateProtocolVersion { newest_minor, unrecognized })
            }
            b'A' => {
                let mut r = Reader::new(body, "NotificationResponse");
                let n = Notification { pid: r.i32()?, channel: r.string()?, payload: r.string()? };
                r.finish()?;
                Self::NotificationResponse(n)
            }
            tag => return Err(MessageError::UnknownTag { tag }),
        })
    }

    /// The message's name as the protocol documentation spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Authentication(_) => "Authentication",
            Self::ParameterStatus { .. } => "ParameterStatus",
            Self::BackendKeyData(_) => "BackendKeyData",
            Self::ReadyForQuery(_) => "ReadyForQuery",
            Self::RowDescription(_) => "RowDescription",
            Self::DataRow(_) => "DataRow",
            Self::CommandComplete(_) => "CommandComplete",
            Self::EmptyQueryResponse => "EmptyQueryResponse",
            Self::CopyOutResponse(_) => "CopyOutResponse",
            Self::CopyInResponse(_) => "CopyInResponse",
            Self::CopyBothResponse(_) => "CopyBothResponse",
            Self::CopyData(_) => "CopyData",
            Self::CopyDone => "CopyDone",
            Self::ErrorResponse(_) => "ErrorResponse",
            Self::NoticeResponse(_) => "NoticeResponse",
            Self::NegotiateProtocolVersion(_) => "NegotiateProtocolVersion",
            Self::NotificationResponse(_) => "NotificationResponse",
        }
    }
}

/// Encoders of frontend messages, each appending one whole message to `out`.
///
/// Thin wrappers over `postgres_protocol::message::frontend` that turn its `io::Error`s into
/// [`EncodeError`], plus the messages it lacks.
pub mod frontend {
    use bytes::{BufMut, BytesMut};
    use postgres_protocol::message::frontend as pp;

    /// A message that cannot be encoded.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum EncodeError {
        /// A string sent as a C string contains a NUL byte.
        #[error("{what} contains a NUL byte, which the protocol cannot carry")]
        Nul {
            /// What the string is (e.g. "query").
            what: &'static str,
        },
        /// The message would exceed the protocol's 1 GiB message size.
        #[error("{what} is too long for one protocol message ({len} bytes)")]
        TooLong {
            /// What the payload is.
            what: &'static str,
            /// Its length.
            len: usize,
        },
    }

    /// Largest frontend message the server accepts (`PQ_LARGE_MESSAGE_LIMIT`, 1 GiB - 1).
    pub const MAX_FRONTEND_MESSAGE: usize = (1 << 30) - 1;

    fn check(s: &[u8], what: &'static str) -> Result<(), EncodeError> {
        if s.contains(&0) {
            return Err(EncodeError::Nul { what });
        }
        if s.len() > MAX_FRONTEND_MESSAGE - 16 {
            return Err(EncodeError::TooLong { what, len: s.len() });
        }
        Ok(())
    }

    /// `Q` Query (simple query protocol). The length counts bytes, so non-ASCII text is fine.
    pub fn query(sql: &str, out: &mut BytesMut) -> Result<(), EncodeError> {
        check(sql.as_bytes(), "query")?;
        pp::query(sql, out).map_err(|_| EncodeError::Nul { what: "query" })
    }

    /// `p` PasswordMessage with a clear-text or `md5…` password.
    pub fn password(password: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
        check(password, "password")?;
        pp::password_message(password, out).map_err(|_| EncodeError::Nul { what: "password" })
    }

    /// `p` SASLInitialResponse.
    pub fn sasl_initial_response(
        mechanism: &str,
        data: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        check(mechanism.as_bytes(), "SASL mechanism")?;
        pp::sasl_initial_response(mechanism, data, out)
            .map_err(|_| EncodeError::Nul { what: "SASL mechanism" })
    }

    /// `p` SASLResponse.
    pub fn sasl_response(data: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
        pp::sasl_response(data, out)
            .map_err(|_| EncodeError::TooLong { what: "SASL response", len: data.len() })
    }

    /// `SSLRequest` (no tag): `Int32 8, Int32 80877103`. The reply is one unframed byte, see
    /// [`crate::startup::SslResponse`].
    pub fn ssl_request(out: &mut BytesMut) {
        pp::ssl_request(out);
    }

    /// `CancelRequest` (no tag, sent on a new connection): `Int32 len, Int32 80877102, Int32
    /// pid`, then the key as received (4 bytes in 3.0, up to 256 in 3.2; postgres-protocol only
    /// writes the 3.0 form).
    pub fn cancel_request(pid: i32, key: &[u8], out: &mut BytesMut) {
        out.put_i32(12 + key.len() as i32);
        out.put_i32(80_877_102);
        out.put_i32(pid);
        out.put_slice(key);
    }

    /// `d` CopyData.
    pub fn copy_data(data: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
        if data.len() > MAX_FRONTEND_MESSAGE - 4 {
            return Err(EncodeError::TooLong { what: "CopyData payload", len: data.len() });
        }
        out.reserve(5 + data.len());
        out.put_u8(b'd');
        out.put_i32(4 + data.len() as i32);
        out.put_slice(data);
        Ok(())
    }

    /// `c` CopyDone.
    pub fn copy_done(out: &mut BytesMut) {
        pp::copy_done(out);
    }

    /// `f` CopyFail with a reason the server logs.
    pub fn copy_fail(reason: &str, out: &mut BytesMut) -> Result<(), EncodeError> {
        check(reason.as_bytes(), "CopyFail reason")?;
        pp::copy_fail(reason, out).map_err(|_| EncodeError::Nul { what: "CopyFail reason" })
    }

    /// `X` Terminate.
    pub fn terminate(out: &mut BytesMut) {
        pp::terminate(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tag: u8, body: &'static [u8]) -> Result<BackendMessage, MessageError> {
        BackendMessage::parse(Frame { tag, body: Bytes::from_static(body) })
    }

    #[test]
    fn authentication_requests() {
        assert_eq!(parse(b'R', b"\0\0\0\0").unwrap(), BackendMessage::Authentication(Authentication::Ok));
        assert_eq!(
            parse(b'R', b"\0\0\0\x05\x01\x02\x03\x04").unwrap(),
            BackendMessage::Authentication(Authentication::Md5Password([1, 2, 3, 4]))
        );
        // As sent by PostgreSQL 15 over TLS.
        assert_eq!(
            parse(b'R', b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0").unwrap(),
            BackendMessage::Authentication(Authentication::Sasl(vec![
                "SCRAM-SHA-256-PLUS".into(),
                "SCRAM-SHA-256".into()
            ]))
        );
        assert_eq!(
            parse(b'R', b"\0\0\0\x0br=abc").unwrap(),
            BackendMessage::Authentication(Authentication::SaslContinue(Bytes::from_static(b"r=abc")))
        );
        let err = parse(b'R', b"\0\0\0\x07").unwrap_err();
        assert!(err.to_string().contains("GSSAPI authentication (code 7)"), "{err}");
        assert!(matches!(parse(b'R', b"\0\0\0\x09"), Err(MessageError::UnsupportedAuth { code: 9, .. })));
        assert_eq!(parse(b'R', b"\0\0\0\x63"), Err(MessageError::UnknownAuthCode { code: 99 }));
        // Truncated salt, SASL list without the final empty string, trailing bytes after Ok.
        for body in [&b"\0\0\0\x05\x01\x02"[..], b"\0\0\0\x0aSCRAM-SHA-256\0", b"\0\0\0\0x", b"\0\0"] {
            let e = BackendMessage::parse(Frame { tag: b'R', body: Bytes::copy_from_slice(body) });
            assert!(matches!(e, Err(MessageError::Malformed { message: "Authentication", .. })), "{e:?}");
        }
    }

    #[test]
    fn backend_key_data_both_protocols() {
        let BackendMessage::BackendKeyData(k) = parse(b'K', b"\0\0\x30\x39\xde\xad\xbe\xef").unwrap() else {
            panic!()
        };
        assert_eq!((k.pid, k.key_i32()), (12345, Some(0xdeadbeef_u32 as i32)));
        assert!(!format!("{k:?}").contains("222"), "key must not be shown");
        let mut body = vec![0, 0, 0, 1];
        body.extend([7; 32]);
        let k = BackendMessage::parse(Frame { tag: b'K', body: body.into() }).unwrap();
        assert!(
            matches!(k, BackendMessage::BackendKeyData(ref k) if k.key.len() == 32 && k.key_i32().is_none())
        );
        assert!(parse(b'K', b"\0\0\0\x01\0\0").is_err());
        let long = BackendMessage::parse(Frame { tag: b'K', body: vec![0; 4 + 257].into() });
        assert!(long.unwrap_err().to_string().contains("4 to 256"));
    }

    #[test]
    fn row_description_and_data_row() {
        // IDENTIFY_SYSTEM's RowDescription as sent by PostgreSQL 15.
        let mut t = vec![0, 4];
        for (name, oid) in [("systemid", 25u32), ("timeline", 23), ("xlogpos", 25), ("dbname", 25)] {
            t.extend(name.as_bytes());
            t.push(0);
            t.extend(0u32.to_be_bytes());
            t.extend(0i16.to_be_bytes());
            t.extend(oid.to_be_bytes());
            t.extend((if oid == 23 { 4i16 } else { -1 }).to_be_bytes());
            t.extend(0i32.to_be_bytes());
            t.extend(0i16.to_be_bytes());
        }
        let BackendMessage::RowDescription(rd) =
            BackendMessage::parse(Frame { tag: b'T', body: t.into() }).unwrap()
        else {
            panic!()
        };
        assert_eq!(rd.fields.len(), 4);
        assert_eq!(
            (rd.fields[1].name.as_str(), rd.fields[1].type_oid, rd.fields[1].type_size),
            ("timeline", 23, 4)
        );
        assert_eq!(rd.index_of("dbname"), Some(3));

        let row = parse(b'D', b"\0\x03\0\0\0\x0373\x31\xff\xff\xff\xff\0\0\0\0").unwrap();
        let BackendMessage::DataRow(row) = row else { panic!() };
        assert_eq!(row.columns, vec![Some(Bytes::from_static(b"731")), None, Some(Bytes::new())]);
    }

    #[test]
    fn malformed_rows_name_the_message_and_offset() {
        let e = parse(b'D', b"\0\x01\0\0\0\x09abc").unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed DataRow message at body offset 6: column length beyond the end of the message"
        );
        // A count that promises more than the body holds is refused before allocating.
        assert!(parse(b'D', b"\x7f\xff").unwrap_err().to_string().contains("column count larger"));
        assert!(parse(b'D', b"\0\x01\xff\xff\xff\xfe").unwrap_err().to_string().contains("negative column"));
        assert!(parse(b'D', b"\xff\xff").is_err());
        assert!(parse(b'T', b"\x7f\xff").unwrap_err().to_string().contains("field count larger"));
        assert!(parse(b'T', b"\0\x01abc").is_err());
        assert!(parse(b'D', b"\0\0x").unwrap_err().to_string().contains("unexpected bytes"));
    }

    #[test]
    fn copy_responses() {
        // CopyBothResponse after START_REPLICATION (PostgreSQL 15): 57 00 00 00 07 00 00 00.
        assert_eq!(
            parse(b'W', b"\0\0\0").unwrap(),
            BackendMessage::CopyBothResponse(CopyResponse { format: 0, column_formats: vec![] })
        );
        assert_eq!(
            parse(b'H', b"\x01\0\x02\0\x01\0\0").unwrap(),
            BackendMessage::CopyOutResponse(CopyResponse { format: 1, column_formats: vec![1, 0] })
        );
        assert!(matches!(parse(b'G', b"\0\0\0"), Ok(BackendMessage::CopyInResponse(_))));
        assert!(parse(b'H', b"\0\0\x02\0\0").is_err());
        assert!(parse(b'H', b"\x02\0\0").is_err());
        assert!(parse(b'H', b"\0\0\x01\0\x05").is_err());
        assert!(parse(b'H', b"\0\x80\0").is_err());
        assert_eq!(parse(b'd', b"w123").unwrap(), BackendMessage::CopyData(Bytes::from_static(b"w123")));
        assert_eq!(parse(b'c', b"").unwrap(), BackendMessage::CopyDone);
        assert!(parse(b'c', b"x").is_err());
    }

    #[test]
    fn simple_messages() {
        assert_eq!(
            parse(b'S', b"server_version\x0015.18 (Debian 15.18-0+deb12u1)\0").unwrap(),
            BackendMessage::ParameterStatus {
                name: "server_version".into(),
                value: "15.18 (Debian 15.18-0+deb12u1)".into()
            }
        );
        assert!(parse(b'S', b"server_version\0").is_err());
        assert_eq!(parse(b'Z', b"I").unwrap(), BackendMessage::ReadyForQuery(TransactionStatus::Idle));
        assert_eq!(parse(b'Z', b"E").unwrap(), BackendMessage::ReadyForQuery(TransactionStatus::Failed));
        assert!(parse(b'Z', b"X").unwrap_err().to_string().contains("unknown transaction status"));
        assert!(parse(b'Z', b"").is_err());
        assert_eq!(
            parse(b'C', b"IDENTIFY_SYSTEM\0").unwrap(),
            BackendMessage::CommandComplete("IDENTIFY_SYSTEM".into())
        );
        assert_eq!(parse(b'I', b"").unwrap(), BackendMessage::EmptyQueryResponse);
        assert_eq!(
            parse(b'v', b"\0\0\0\0\0\0\0\x01_pq_.x\0").unwrap(),
            BackendMessage::NegotiateProtocolVersion(NegotiateProtocolVersion {
                newest_minor: 0,
                unrecognized: vec!["_pq_.x".into()]
            })
        );
        assert!(parse(b'v', b"\0\0\0\0\x7f\0\0\0").is_err());
        assert_eq!(
            parse(b'A', b"\0\0\0\x07chan\0hi\0").unwrap(),
            BackendMessage::NotificationResponse(Notification {
                pid: 7,
                channel: "chan".into(),
                payload: "hi".into()
            })
        );
        let e = parse(b'E', b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"u\"\0\0")
            .unwrap();
        assert!(matches!(e, BackendMessage::ErrorResponse(ref db) if db.code == "28P01"));
        assert!(parse(b'N', b"SNOTICE\0").unwrap_err().to_string().contains("NoticeResponse"));
        assert_eq!(parse(b'Q', b""), Err(MessageError::UnknownTag { tag: b'Q' }));
    }

    #[test]
    fn encoders() {
        let mut out = BytesMut::new();
        frontend::query("BASE_BACKUP ( LABEL 'é' )", &mut out).unwrap();
        // The length counts bytes: é is two.
        assert_eq!(&out[..5], b"Q\0\0\0\x1f");
        assert!(frontend::query("a\0b", &mut out).unwrap_err().to_string().contains("NUL"));
        out.clear();
        frontend::cancel_request(5, &[1, 2, 3, 4], &mut out);
        assert_eq!(&out[..], b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\x05\x01\x02\x03\x04");
        out.clear();
        frontend::copy_data(b"xy", &mut out).unwrap();
        frontend::copy_done(&mut out);
        assert_eq!(&out[..], b"d\0\0\0\x06xyc\0\0\0\x04");
        out.clear();
        frontend::ssl_request(&mut out);
        assert_eq!(&out[..], b"\0\0\0\x08\x04\xd2\x16\x2f");
    }

    use bytes::BytesMut;
}
