//! The few backend message bodies the decoder needs, parsed by [`pg_wire::message`]
//! (<https://www.postgresql.org/docs/current/protocol-message-formats.html>), reduced to what the
//! decoder checks; plus the body of the 15+ copystream `n` (new archive) message.

use bytes::Bytes;
use pg_wire::{BackendMessage, Frame};

fn parse(f: &Frame) -> Result<BackendMessage, String> {
    // Cheap: the body is a reference-counted `Bytes`.
    BackendMessage::parse(f.clone()).map_err(|e| e.to_string())
}

fn other(m: &BackendMessage, want: &str) -> String {
    format!("{} where {want} was expected", m.name())
}

/// Column names of a `RowDescription`.
pub(crate) fn row_description(f: &Frame) -> Result<Vec<String>, String> {
    match parse(f)? {
        BackendMessage::RowDescription(d) => Ok(d.fields.into_iter().map(|c| c.name).collect()),
        m => Err(other(&m, "RowDescription")),
    }
}

/// Values of a `DataRow` (`None` = SQL NULL), as zero-copy slices of the frame.
pub(crate) fn data_row(f: &Frame) -> Result<Vec<Option<Bytes>>, String> {
    match parse(f)? {
        BackendMessage::DataRow(r) => Ok(r.columns),
        m => Err(other(&m, "DataRow")),
    }
}

/// The tag of a `CommandComplete`.
pub(crate) fn command_complete(f: &Frame) -> Result<String, String> {
    match parse(f)? {
        BackendMessage::CommandComplete(tag) => Ok(tag),
        m => Err(other(&m, "CommandComplete")),
    }
}

/// Checks a `CopyOutResponse` body: overall format, column count, per-column formats.
pub(crate) fn copy_out_response(f: &Frame) -> Result<(), String> {
    match parse(f)? {
        BackendMessage::CopyOutResponse(_) => Ok(()),
        m => Err(other(&m, "CopyOutResponse")),
    }
}

/// Name and value of a `ParameterStatus`.
pub(crate) fn parameter_status(f: &Frame) -> Result<(String, String), String> {
    match parse(f)? {
        BackendMessage::ParameterStatus { name, value } => Ok((name, value)),
        m => Err(other(&m, "ParameterStatus")),
    }
}

/// Archive name and tablespace location of a copystream `n` message (after its type byte):
/// two NUL-terminated UTF-8 strings and nothing else (`bbsink_copystream_begin_archive` in
/// `src/backend/backup/basebackup_copy.c`).
pub(crate) fn new_archive(body: &[u8]) -> Result<(String, String), String> {
    let cstr = |b: &[u8], what: &str| -> Result<(String, usize), String> {
        let n = b.iter().position(|&x| x == 0).ok_or_else(|| format!("{what} without its NUL terminator"))?;
        let s = std::str::from_utf8(&b[..n]).map_err(|_| format!("{what} not UTF-8"))?;
        Ok((s.to_owned(), n + 1))
    };
    let (name, used) = cstr(body, "archive name")?;
    let (location, used2) = cstr(&body[used..], "location")?;
    let rest = body.len() - used - used2;
    if rest != 0 {
        return Err(format!("{rest} unexpected trailing bytes"));
    }
    Ok((name, location))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &'static [u8]) -> Frame {
        Frame { tag, body: Bytes::from_static(body) }
    }

    #[test]
    fn truncated_bodies_are_errors() {
        assert!(row_description(&frame(b'T', b"\x00\x02abc\0")).is_err());
        assert!(data_row(&frame(b'D', b"\x00\x01\x00\x00\x00\x09abc")).is_err());
        assert!(data_row(&frame(b'D', b"\x00\x01\xff\xff\xff\xfe")).is_err());
        assert!(command_complete(&frame(b'C', b"SELECT")).is_err());
        assert!(copy_out_response(&frame(b'H', b"\x00\x00\x01")).is_err());
        assert!(parameter_status(&frame(b'S', b"a\0")).is_err());
        assert_eq!(
            data_row(&frame(b'D', b"\x00\x02\xff\xff\xff\xff\x00\x00\x00\x01x")).unwrap(),
            vec![None, Some(Bytes::from_static(b"x"))]
        );
        assert_eq!(parameter_status(&frame(b'S', b"a\0b\0")).unwrap(), ("a".into(), "b".into()));
    }

    #[test]
    fn wrong_message_kind_is_named() {
        let e = data_row(&frame(b'C', b"SELECT 1\0")).unwrap_err();
        assert!(e.contains("CommandComplete") && e.contains("DataRow"), "{e}");
    }

    #[test]
    fn new_archive_bodies() {
        assert_eq!(new_archive(b"base.tar\0\0").unwrap(), ("base.tar".into(), String::new()));
        assert!(new_archive(b"base.tar\0").unwrap_err().contains("location"));
        assert!(new_archive(b"base.tar").unwrap_err().contains("archive name"));
        assert!(new_archive(b"a\0b\0x").unwrap_err().contains("trailing"));
        assert!(new_archive(b"\xff\0b\0").unwrap_err().contains("UTF-8"));
    }
}
