//! The header and table of contents of a `pg_dump` custom-format archive (`pg_dump -Fc`), read
//! from the start of the archive's byte stream. Sans-IO: the caller appends bytes to a buffer
//! it keeps and calls [`TocReader::advance`] with the whole buffer; the reader says whether it
//! needs more bytes or where the table of contents ends.
//!
//! A custom-format archive is `PGDMP`, a header, the table of contents (every entry's
//! definition SQL, owner and dependencies), then the data blocks. The header and the TOC are
//! as big as the schema, not as the data: the one-pass restore keeps them (the *head*) to
//! restore role-dependent entries later (see [`crate::restore`]).
//!
//! Layout (PostgreSQL's `pg_backup_archiver.c`, `ReadHead` and `ReadToc`, and
//! `pg_backup_custom.c`, `_ReadExtraToc`), for archive versions 1.10 to 1.16:
//!
//! - `PGDMP`, version major, minor, revision (bytes), int size, offset size, format (1 =
//!   custom); compression: an int before 1.15, an algorithm byte from 1.15; seven ints (the
//!   creation time); the database name, the server version and the pg_dump version (strings);
//! - an int: the number of entries; each: dump id (int), had-dumper (int), table OID, OID,
//!   tag, desc (strings), section (int, from 1.11), definition, drop statement, copy
//!   statement, namespace, tablespace (strings), table AM (string, from 1.14), relkind (int,
//!   from 1.16), owner, with-OIDs flag (strings), dependencies (strings up to a NULL string),
//!   then the custom format's data offset (a flag byte and offset-size bytes).
//!
//! An int is a sign byte and int-size bytes, least significant first; a string is an int
//! length (negative: NULL) and that many bytes. Nothing is allocated by a length read from
//! the input: a string is copied only once all its bytes are in the caller's buffer.

use std::fmt;

/// The oldest archive version read (1.10, pg_dump 8.4's).
const MIN_VERSION: (u8, u8) = (1, 10);
/// The newest archive version read (1.16, pg_dump 17 and 18).
const MAX_VERSION: (u8, u8) = (1, 16);
/// The custom format's number in the header.
const FORMAT_CUSTOM: u8 = 1;

/// Why the start of an archive cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveError {
    /// The bytes do not start with `PGDMP` (not a custom-format archive).
    NotCustomFormat,
    /// A version this reader does not know.
    UnsupportedVersion(u8, u8),
    /// The header or an entry is malformed; `at` is the byte offset.
    Malformed {
        /// Byte offset in the archive.
        at: usize,
        /// What is wrong.
        what: String,
    },
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotCustomFormat => write!(f, "not a pg_dump custom-format archive (no PGDMP signature)"),
            Self::UnsupportedVersion(a, b) => write!(
                f,
                "archive version {a}.{b} is not supported (versions {}.{} to {}.{} are)",
                MIN_VERSION.0, MIN_VERSION.1, MAX_VERSION.0, MAX_VERSION.1
            ),
            Self::Malformed { at, what } => write!(f, "malformed archive at byte {at}: {what}"),
        }
    }
}

impl std::error::Error for ArchiveError {}

/// The archive's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Archive version (major, minor, revision).
    pub version: (u8, u8, u8),
    /// The name of the dumped database.
    pub dbname: Option<String>,
    /// The dumped server's version.
    pub server_version: Option<String>,
    /// The version of the pg_dump that wrote it.
    pub dump_version: Option<String>,
}

/// One entry of the table of contents (the fields the restore needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TocEntry {
    /// The dump id (what `pg_restore -L` lists refer to).
    pub dump_id: i32,
    /// The kind of entry (`TABLE`, `ACL`, `DATABASE PROPERTIES`, …).
    pub desc: String,
    /// Its tag (`customers`, `TABLE customers`, `DATABASE app`, …).
    pub tag: String,
    /// Its owner (a role name, bytes as stored), if any.
    pub owner: Option<Vec<u8>>,
    /// The definition SQL, kept only for the database's own entries
    /// (`DATABASE PROPERTIES`, and an `ACL` whose tag starts with `DATABASE `).
    pub defn: Option<Vec<u8>>,
    /// Dump ids this entry depends on.
    pub deps: Vec<i32>,
    /// Whether it has a data block (`TABLE DATA`, `BLOBS`, …).
    pub has_data: bool,
}

impl TocEntry {
    /// Whether the definition of this entry is kept (see [`TocEntry::defn`]).
    fn keeps_defn(desc: &str, tag: &str) -> bool {
        desc == "DATABASE PROPERTIES" || (desc == "ACL" && tag.starts_with("DATABASE "))
    }
}

/// How far the reader got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed (at least until the buffer holds `.0` bytes).
    NeedMore(usize),
    /// The header and the whole table of contents are read; they end at this offset.
    Done(usize),
}

/// An incremental reader of a custom-format archive's header and table of contents.
#[derive(Debug, Default)]
pub struct TocReader {
    header: Option<Header>,
    int_size: usize,
    off_size: usize,
    minor: u8,
    count: Option<usize>,
    entries: Vec<TocEntry>,
    /// Offset of the next thing to read.
    pos: usize,
    /// Do not try again before the buffer holds this many bytes.
    need: usize,
    done: bool,
}

/// Not enough bytes: the buffer must hold at least this many.
struct Short(usize);

enum Fail {
    Short(Short),
    Bad(ArchiveError),
}

impl From<Short> for Fail {
    fn from(s: Short) -> Self {
        Fail::Short(s)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    int_size: usize,
}

impl<'a> Cursor<'a> {
    fn bad(&self, what: impl Into<String>) -> Fail {
        Fail::Bad(ArchiveError::Malformed { at: self.pos, what: what.into() })
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short(usize::MAX))?;
        if end > self.buf.len() {
            return Err(Short(end));
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, Short> {
        Ok(self.bytes(1)?[0])
    }

    /// A sign byte and `int_size` bytes, least significant first.
    fn int(&mut self) -> Result<i64, Fail> {
        let at = self.pos;
        let sign = self.byte()?;
        let raw = self.bytes(self.int_size)?;
        let mut v: u64 = 0;
        for (i, b) in raw.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        let v = i64::try_from(v)
            .map_err(|_| Fail::Bad(ArchiveError::Malformed { at, what: "integer out of range".into() }))?;
        Ok(if sign != 0 { -v } else { v })
    }

    fn int32(&mut self, what: &str) -> Result<i32, Fail> {
        let at = self.pos;
        let v = self.int()?;
        i32::try_from(v)
            .map_err(|_| Fail::Bad(ArchiveError::Malformed { at, what: format!("{what} {v} out of range") }))
    }

    /// A string: an int length (negative: NULL), then the bytes.
    fn string(&mut self) -> Result<Option<&'a [u8]>, Fail> {
        let at = self.pos;
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| {
            Fail::Bad(ArchiveError::Malformed { at, what: format!("string length {len} out of range") })
        })?;
        Ok(Some(self.bytes(len)?))
    }

    fn text(&mut self) -> Result<Option<String>, Fail> {
        Ok(self.string()?.map(|b| String::from_utf8_lossy(b).into_owned()))
    }
}

impl TocReader {
    /// A reader at the start of an archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads on from `buf`, which holds the archive's bytes from its first one (the same
    /// buffer, grown, at every call).
    pub fn advance(&mut self, buf: &[u8]) -> Result<Progress, ArchiveError> {
        if self.done {
            return Ok(Progress::Done(self.pos));
        }
        if buf.len() < self.need {
            return Ok(Progress::NeedMore(self.need));
        }
        loop {
            match self.step(buf) {
                Ok(true) => {
                    self.done = true;
                    return Ok(Progress::Done(self.pos));
                }
                Ok(false) => {}
                Err(Fail::Short(Short(n))) => {
                    self.need = n;
                    return Ok(Progress::NeedMore(n));
                }
                Err(Fail::Bad(e)) => return Err(e),
            }
        }
    }

    /// Reads one unit (the header, the count, or one entry) atomically: on a short read
    /// nothing is consumed. Returns whether the TOC is complete.
    fn step(&mut self, buf: &[u8]) -> Result<bool, Fail> {
        let mut c = Cursor { buf, pos: self.pos, int_size: self.int_size };
        if self.header.is_none() {
            let magic = c.bytes(5)?;
            if magic != b"PGDMP" {
                return Err(Fail::Bad(ArchiveError::NotCustomFormat));
            }
            let (major, minor, rev) = (c.byte()?, c.byte()?, c.byte()?);
            if (major, minor) < MIN_VERSION || (major, minor) > MAX_VERSION {
                return Err(Fail::Bad(ArchiveError::UnsupportedVersion(major, minor)));
            }
            let int_size = usize::from(c.byte()?);
            if !(1..=8).contains(&int_size) {
                return Err(c.bad(format!("integer size {int_size} (1 to 8 are read)")));
            }
            c.int_size = int_size;
            let off_size = usize::from(c.byte()?);
            if !(1..=8).contains(&off_size) {
                return Err(c.bad(format!("offset size {off_size} (1 to 8 are read)")));
            }
            let format = c.byte()?;
            if format != FORMAT_CUSTOM {
                return Err(c.bad(format!("archive format {format}, not the custom format (1)")));
            }
            if minor >= 15 {
                c.byte()?;
            } else {
                c.int()?;
            }
            for _ in 0..7 {
                c.int()?;
            }
            let dbname = c.text()?;
            let server_version = c.text()?;
            let dump_version = c.text()?;
            self.header = Some(Header { version: (major, minor, rev), dbname, server_version, dump_version });
            self.int_size = int_size;
            self.off_size = off_size;
            self.minor = minor;
            self.pos = c.pos;
            return Ok(false);
        }
        let Some(count) = self.count else {
            let n = c.int()?;
            let n = usize::try_from(n).map_err(|_| c.bad(format!("TOC entry count {n}")))?;
            self.count = Some(n);
            self.pos = c.pos;
            return Ok(n == 0);
        };
        let dump_id = c.int32("dump id")?;
        if dump_id <= 0 {
            return Err(c.bad(format!("dump id {dump_id} out of range")));
        }
        let has_data = c.int()? != 0;
        c.string()?; // table OID
        c.string()?; // OID
        let tag = c.text()?.unwrap_or_default();
        let desc = c.text()?.unwrap_or_default();
        if self.minor >= 11 {
            c.int()?; // section
        }
        let defn = c.string()?;
        c.string()?; // drop statement
        c.string()?; // copy statement
        c.string()?; // namespace
        c.string()?; // tablespace
        if self.minor >= 14 {
            c.string()?; // table access method
        }
        if self.minor >= 16 {
            c.int()?; // relkind
        }
        let owner = c.string()?.map(<[u8]>::to_vec);
        c.string()?; // with OIDs
        let mut deps = Vec::new();
        while let Some(dep) = c.string()? {
            let text = std::str::from_utf8(dep).ok().map(str::trim);
            match text.and_then(|t| t.parse::<i32>().ok()) {
                Some(d) => deps.push(d),
                None => {
                    return Err(
                        c.bad(format!("dependency {:?} is not a dump id", String::from_utf8_lossy(dep)))
                    );
                }
            }
        }
        c.byte()?; // data offset flag
        c.bytes(self.off_size)?;
        let defn = if TocEntry::keeps_defn(&desc, &tag) { defn.map(<[u8]>::to_vec) } else { None };
        self.entries.push(TocEntry { dump_id, desc, tag, owner, defn, deps, has_data });
        self.pos = c.pos;
        Ok(self.entries.len() == count)
    }

    /// The header, once read.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The entries read so far (all of them once [`Progress::Done`]), in archive order.
    pub fn entries(&self) -> &[TocEntry] {
        &self.entries
    }

    /// Takes the entries.
    pub fn into_entries(self) -> Vec<TocEntry> {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an archive start as pg_dump does (version 1.`minor`, 4-byte ints, 8-byte offsets).
    /// (dump id, desc, tag, owner, dependencies)
    type Entry<'a> = (i32, &'a str, &'a str, Option<&'a str>, &'a [i32]);

    pub(crate) fn archive(minor: u8, entries: &[Entry<'_>]) -> Vec<u8> {
        let mut out = b"PGDMP".to_vec();
        out.extend([1, minor, 0, 4, 8, 1]);
        let int = |out: &mut Vec<u8>, v: i64| {
            out.push(u8::from(v < 0));
            out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        };
        let string = |out: &mut Vec<u8>, s: Option<&[u8]>| match s {
            None => int(out, -1),
            Some(s) => {
                int(out, s.len() as i64);
                out.extend_from_slice(s);
            }
        };
        if minor >= 15 {
            out.push(0);
        } else {
            int(&mut out, 0);
        }
        for v in [1, 2, 3, 4, 5, 125, 0] {
            int(&mut out, v);
        }
        string(&mut out, Some(b"app"));
        string(&mut out, Some(b"15.1"));
        string(&mut out, Some(b"15.1"));
        int(&mut out, entries.len() as i64);
        for (id, desc, tag, owner, deps) in entries {
            int(&mut out, i64::from(*id));
            int(&mut out, 0);
            string(&mut out, Some(b"0"));
            string(&mut out, Some(b"0"));
            string(&mut out, Some(tag.as_bytes()));
            string(&mut out, Some(desc.as_bytes()));
            if minor >= 11 {
                int(&mut out, 1);
            }
            let defn = format!("-- defn of {tag}\n");
            string(&mut out, Some(defn.as_bytes()));
            string(&mut out, Some(b""));
            string(&mut out, None);
            string(&mut out, Some(b"public"));
            string(&mut out, Some(b""));
            if minor >= 14 {
                string(&mut out, Some(b"heap"));
            }
            if minor >= 16 {
                int(&mut out, i64::from(b'r'));
            }
            string(&mut out, owner.map(str::as_bytes));
            string(&mut out, Some(b"false"));
            for d in *deps {
                string(&mut out, Some(d.to_string().as_bytes()));
            }
            string(&mut out, None);
            out.push(3);
            out.extend_from_slice(&[0; 8]);
        }
        out
    }

    #[test]
    fn reads_every_supported_version_in_any_chunking() {
        let entries: &[Entry<'_>] = &[
            (10, "DATABASE", "app", Some("alice"), &[]),
            (11, "ACL", "DATABASE app", Some("alice"), &[10]),
            (20, "TABLE", "t", Some("rôle spécial"), &[]),
            (21, "ACL", "TABLE t", None, &[20]),
        ];
        for minor in 10..=16 {
            let mut bytes = archive(minor, entries);
            let toc_end = bytes.len();
            bytes.extend_from_slice(b"DATA BLOCKS FOLLOW");
            for chunk in [1, 3, 7, 64, bytes.len()] {
                let mut r = TocReader::new();
                let mut buf = Vec::new();
                let mut end = None;
                for piece in bytes.chunks(chunk) {
                    buf.extend_from_slice(piece);
                    if let Progress::Done(n) = r.advance(&buf).unwrap() {
                        end = Some(n);
                        break;
                    }
                }
                assert_eq!(end, Some(toc_end), "1.{minor} in chunks of {chunk}");
                let got = r.entries();
                assert_eq!(got.len(), 4);
                assert_eq!(got[2].owner.as_deref(), Some("rôle spécial".as_bytes()));
                assert_eq!(got[1].deps, [10]);
                assert_eq!(got[1].defn.as_deref(), Some(&b"-- defn of DATABASE app\n"[..]));
                assert_eq!(got[2].defn, None, "only the database's own definitions are kept");
                assert_eq!(got[3].owner, None);
                assert_eq!(r.header().unwrap().dbname.as_deref(), Some("app"));
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(TocReader::new().advance(b"PGDMQ\x01").unwrap_err(), ArchiveError::NotCustomFormat);
        assert_eq!(TocReader::new().advance(b"PGD").unwrap(), Progress::NeedMore(5));
        let mut v = archive(14, &[]);
        v[6] = 17;
        assert_eq!(TocReader::new().advance(&v).unwrap_err(), ArchiveError::UnsupportedVersion(1, 17));
        let mut v = archive(14, &[]);
        v[10] = 3; // tar format
        assert!(matches!(TocReader::new().advance(&v), Err(ArchiveError::Malformed { at: 11, .. })));
        // A huge string length asks for more bytes; it allocates nothing.
        let mut v = archive(14, &[]);
        let n = v.len();
        v[n - 5..].copy_from_slice(&[0, 1, 0, 0, 0]); // one entry
        v.extend_from_slice(&[0, 7, 0, 0, 0]); // dump id 7
        v.extend_from_slice(&[0, 0, 0, 0, 0]); // had dumper
        v.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0x7f]); // table OID: 2^31-1 bytes
        match TocReader::new().advance(&v).unwrap() {
            Progress::NeedMore(need) => assert!(need > 0x7fff_ffff),
            p => panic!("{p:?}"),
        }
        // A negative dump id is malformed.
        let mut v = archive(14, &[]);
        let n = v.len();
        v[n - 5..].copy_from_slice(&[0, 1, 0, 0, 0]);
        v.extend_from_slice(&[1, 7, 0, 0, 0]);
        assert!(matches!(TocReader::new().advance(&v), Err(ArchiveError::Malformed { .. })));
    }

    #[test]
    fn an_empty_toc_is_complete() {
        let v = archive(16, &[]);
        assert_eq!(TocReader::new().advance(&v).unwrap(), Progress::Done(v.len()));
    }
}

#[cfg(test)]
mod fuzz_replay {
    use super::*;

    fn seeds() -> Vec<(String, Vec<u8>)> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/logical_archive");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("fuzz/regressions/logical_archive") {
            let path = entry.unwrap().path();
            out.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            ));
        }
        assert!(!out.is_empty(), "no regression inputs in {}", dir.display());
        out
    }

    #[test]
    fn fuzz_regressions_replay() {
        for (_, data) in seeds() {
            crate::fuzzing::archive(&data);
        }
    }

    /// The heads of real archives written by pg_dump 15 (1.14), 16 (1.15) and 18 (1.16).
    #[test]
    fn real_pg_dump_heads() {
        for (name, data) in seeds().into_iter().filter(|(n, _)| n.starts_with("seed-pg_dump-")) {
            let mut r = TocReader::new();
            let Progress::Done(end) = r.advance(&data).unwrap() else { panic!("{name}: incomplete") };
            assert_eq!(end, data.len() - 16, "{name}");
            let e = r.entries();
            assert!(e.iter().any(|e| e.desc == "DATABASE" && e.tag == "app"), "{name}");
            let props = e.iter().find(|e| e.desc == "DATABASE PROPERTIES").unwrap();
            assert!(
                String::from_utf8_lossy(props.defn.as_deref().unwrap())
                    .contains("ALTER ROLE bob IN DATABASE app")
            );
            assert!(e.iter().filter(|e| e.desc == "TABLE DATA").all(|e| e.has_data), "{name}");
            assert!(e.iter().filter(|e| e.desc.contains("ACL")).all(|e| !e.has_data), "{name}");
            let view = e.iter().find(|e| e.tag == "big_customers").unwrap();
            assert_eq!(view.owner.as_deref(), Some("rôle spécial".as_bytes()), "{name}");
        }
    }

    /// Deterministic mutations of the real heads (a stand-in for a fuzzing run in `cargo test`).
    #[test]
    fn mutated_heads() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for (_, data) in seeds().into_iter().filter(|(n, _)| n.starts_with("seed-pg_dump-")) {
            for _ in 0..300 {
                let mut m = data.clone();
                for _ in 0..(next() % 4 + 1) {
                    let i = (next() % m.len() as u64) as usize;
                    m[i] = next() as u8;
                }
                let cut = (next() % m.len() as u64) as usize;
                m.truncate(cut.max(m.len() / 2));
                crate::fuzzing::archive(&m);
            }
        }
    }
}
