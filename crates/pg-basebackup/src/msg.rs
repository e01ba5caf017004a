//! The few backend message bodies the decoder needs: `RowDescription`, `DataRow`,
//! `CommandComplete`, `CopyOutResponse`, `ParameterStatus`
//! (<https://www.postgresql.org/docs/current/protocol-message-formats.html>), and the LSN text
//! form. Private on purpose: to be replaced by pg-wire's message module once it exists.

use std::fmt;

use bytes::Bytes;

/// A WAL location (`XLogRecPtr`), shown as PostgreSQL does: `%X/%X` of the high and low halves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses `X/X` (1 to 8 hex digits each side, any case; `pg_lsn_in` in
    /// `src/backend/utils/adt/pg_lsn.c`).
    pub fn parse(s: &str) -> Option<Lsn> {
        let (hi, lo) = s.split_once('/')?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(h, 16).ok()
        };
        Some(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// A cursor over a message body; every read is bounds-checked.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() - self.pos < n {
            return Err(format!("message ends at byte {} where {} more were needed", self.buf.len(), n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn cstr(&mut self) -> Result<&'a [u8], String> {
        let rest = &self.buf[self.pos..];
        let n = rest.iter().position(|&b| b == 0).ok_or("string without its NUL terminator")?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    pub(crate) fn end(&self) -> Result<(), String> {
        if self.pos != self.buf.len() {
            return Err(format!("{} unexpected trailing bytes", self.buf.len() - self.pos));
        }
        Ok(())
    }
}

/// Column names of a `RowDescription`.
pub(crate) fn row_description(body: &Bytes) -> Result<Vec<String>, String> {
    let mut c = Cursor::new(body);
    let n = c.i16()?;
    if !(0..=1600).contains(&n) {
        return Err(format!("impossible column count {n}"));
    }
    let mut names = Vec::with_capacity(n as usize);
    for _ in 0..n {
        names.push(String::from_utf8_lossy(c.cstr()?).into_owned());
        // table oid, attnum, type oid, typlen, typmod, format: never trusted (§4.1).
        c.take(4 + 2 + 4 + 2 + 4 + 2)?;
    }
    c.end()?;
    Ok(names)
}

/// Values of a `DataRow` (`None` = SQL NULL), as zero-copy slices.
pub(crate) fn data_row(body: &Bytes) -> Result<Vec<Option<Bytes>>, String> {
    let mut c = Cursor::new(body);
    let n = c.i16()?;
    if !(0..=1600).contains(&n) {
        return Err(format!("impossible column count {n}"));
    }
    let mut vals = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = c.i32()?;
        if len == -1 {
            vals.push(None);
        } else if len < 0 {
            return Err(format!("negative field length {len}"));
        } else {
            let start = c.pos;
            c.take(len as usize)?;
            vals.push(Some(body.slice(start..start + len as usize)));
        }
    }
    c.end()?;
    Ok(vals)
}

/// The tag of a `CommandComplete`.
pub(crate) fn command_complete(body: &Bytes) -> Result<String, String> {
    let mut c = Cursor::new(body);
    let tag = String::from_utf8_lossy(c.cstr()?).into_owned();
    c.end()?;
    Ok(tag)
}

/// Checks a `CopyOutResponse` body: overall format, column count, per-column formats.
pub(crate) fn copy_out_response(body: &Bytes) -> Result<(), String> {
    let mut c = Cursor::new(body);
    let format = c.take(1)?[0];
    if format > 1 {
        return Err(format!("unknown copy format {format}"));
    }
    let n = c.i16()?;
    if n < 0 {
        return Err(format!("negative column count {n}"));
    }
    c.take(2 * n as usize)?;
    c.end()
}

/// Name and value of a `ParameterStatus`.
pub(crate) fn parameter_status(body: &Bytes) -> Result<(String, String), String> {
    let mut c = Cursor::new(body);
    let name = String::from_utf8_lossy(c.cstr()?).into_owned();
    let value = String::from_utf8_lossy(c.cstr()?).into_owned();
    c.end()?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_forms() {
        assert_eq!(Lsn::parse("0/3000028"), Some(Lsn(0x3000028)));
        assert_eq!(Lsn::parse("0/03000028"), Some(Lsn(0x3000028)));
        assert_eq!(Lsn::parse("a/bc"), Some(Lsn(0xa_0000_00bc)));
        assert_eq!(Lsn::parse("1/123456789"), None);
        assert_eq!(Lsn::parse("3000028"), None);
        assert_eq!(Lsn::parse("/1"), None);
        assert_eq!(Lsn::parse("+1/1"), None);
        assert_eq!(Lsn(0xA_0000_00BC).to_string(), "A/BC");
    }

    #[test]
    fn truncated_bodies_are_errors() {
        assert!(row_description(&Bytes::from_static(b"\x00\x02abc\0")).is_err());
        assert!(data_row(&Bytes::from_static(b"\x00\x01\x00\x00\x00\x09abc")).is_err());
        assert!(data_row(&Bytes::from_static(b"\x00\x01\xff\xff\xff\xfe")).is_err());
        assert!(command_complete(&Bytes::from_static(b"SELECT")).is_err());
        assert!(copy_out_response(&Bytes::from_static(b"\x00\x00\x01")).is_err());
        assert_eq!(
            data_row(&Bytes::from_static(b"\x00\x02\xff\xff\xff\xff\x00\x00\x00\x01x")).unwrap(),
            vec![None, Some(Bytes::from_static(b"x"))]
        );
    }
}
