//! One 512-byte ustar header block, parsed strictly.
//!
//! Layout from POSIX.1-1988 ustar as written by PostgreSQL's `tarCreateHeader`
//! (`src/port/tar.c`, offsets in `src/include/pgtar.h`): name 0..100, mode 100..108, uid
//! 108..116, gid 116..124, size 124..136, mtime 136..148, chksum 148..156, typeflag 156,
//! linkname 157..257, magic 257..263, version 263..265, uname 265..297, gname 297..329,
//! devmajor 329..337, devminor 337..345, prefix 345..500.

use crate::TarErrorKind;

/// Size of a tar block: headers, data padding and the terminator all come in these units.
pub const BLOCK_LEN: usize = 512;

/// What a tar entry is, from its `typeflag` byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// `'0'` (or the pre-POSIX `'\0'`): a regular file whose `size` bytes follow the header.
    File,
    /// `'5'`: a directory; PostgreSQL writes the name with a trailing `/` (stripped here).
    Directory,
    /// `'2'`: a symbolic link; PostgreSQL writes it for `pg_tblspc/<oid>` with a trailing `/`.
    Symlink,
    /// Any other typeflag that is not refused (e.g. `'3'`/`'4'` devices, `'6'` FIFO, `'7'`);
    /// its `size` bytes of data, if any, are passed through as for a file.
    Other(u8),
}

/// A parsed, validated ustar header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Normalised relative path, raw bytes: `prefix/name` joined, `./` prefixes and trailing
    /// `/` removed; never empty, never absolute, no `.`, `..` or empty components. Not
    /// necessarily UTF-8: PostgreSQL copies whatever name a file has (see [`Header::path_lossy`]).
    pub path: Vec<u8>,
    /// The entry type.
    pub kind: EntryKind,
    /// Permission bits (and whatever else the writer put in the octal `mode` field).
    pub mode: u32,
    /// Numeric owner id.
    pub uid: u64,
    /// Numeric group id.
    pub gid: u64,
    /// Number of data bytes that follow the header (before padding to 512).
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: u64,
    /// The link target of a symlink (`None` for every other kind).
    pub link_target: Option<String>,
    /// Owner name (`postgres` in PostgreSQL's archives), lossily decoded.
    pub uname: String,
    /// Group name, lossily decoded.
    pub gname: String,
}

/// Whether a block is entirely zero (a terminator block).
pub fn is_zero_block(block: &[u8; BLOCK_LEN]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Checksum of a header: the sum of all 512 bytes with the `chksum` field (148..156) counted as
/// spaces, both unsigned (the standard) and signed (what some old tars computed; GNU tar accepts
/// both).
pub fn header_checksums(block: &[u8; BLOCK_LEN]) -> (u64, i64) {
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    (unsigned, signed)
}

/// Parses a numeric header field: octal digits (leading spaces allowed, terminated by space or
/// NUL, nothing but spaces and NULs after), or GNU base-256 (first byte `0x80`..=`0xbf`, the
/// rest big-endian, as `print_tar_number` in `src/port/tar.c` writes for values too large for
/// octal). Negative base-256 values, empty fields and overflow are refused.
pub fn parse_number(field: &[u8]) -> Option<u64> {
    let first = *field.first()?;
    if first & 0x80 != 0 {
        if first & 0x40 != 0 {
            return None; // negative two's complement value
        }
        let mut v: u64 = u64::from(first & 0x3f);
        for &b in &field[1..] {
            if v >> 56 != 0 {
                return None;
            }
            v = (v << 8) | u64::from(b);
        }
        return Some(v);
    }
    let mut i = 0;
    while i < field.len() && field[i] == b' ' {
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while i < field.len() && (b'0'..=b'7').contains(&field[i]) {
        v = v.checked_mul(8)?.checked_add(u64::from(field[i] - b'0'))?;
        i += 1;
    }
    if i == start || !field[i..].iter().all(|&b| b == b' ' || b == 0) {
        return None;
    }
    Some(v)
}

/// The bytes of a NUL-terminated field up to its terminator (all of it if there is none);
/// `Err` if anything but NULs follows the terminator (a NUL inside the name).
fn c_field(field: &[u8]) -> Result<&[u8], ()> {
    match field.iter().position(|&b| b == 0) {
        None => Ok(field),
        Some(n) if field[n..].iter().all(|&b| b == 0) => Ok(&field[..n]),
        Some(_) => Err(()),
    }
}

fn number(
    block: &[u8; BLOCK_LEN],
    range: std::ops::Range<usize>,
    field: &'static str,
) -> Result<u64, TarErrorKind> {
    parse_number(&block[range]).ok_or(TarErrorKind::BadNumber { field })
}

/// Raw name of a header (prefix joined), lossily decoded: for error messages about a header
/// that failed validation.
pub(crate) fn raw_name(block: &[u8; BLOCK_LEN]) -> String {
    let name = &block[..100];
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(100)];
    let mut s = String::new();
    if &block[257..263] == b"ustar\0" {
        let prefix = &block[345..500];
        let prefix = &prefix[..prefix.iter().position(|&b| b == 0).unwrap_or(155)];
        if !prefix.is_empty() {
            s.push_str(&String::from_utf8_lossy(prefix));
            s.push('/');
        }
    }
    s.push_str(&String::from_utf8_lossy(name));
    s
}

/// Normalises and validates an entry path (see [`Header::path`]); the bytes are kept as they
/// are, UTF-8 or not.
fn normalise_path(raw: Vec<u8>, kind: EntryKind) -> Result<Vec<u8>, TarErrorKind> {
    if raw.starts_with(b"/") {
        return Err(TarErrorKind::AbsolutePath);
    }
    let mut p = &raw[..];
    while let Some(rest) = p.strip_prefix(b"./") {
        p = rest;
    }
    if p == b"." {
        p = b"";
    }
    if p.ends_with(b"/") {
        match kind {
            EntryKind::Directory | EntryKind::Symlink => {
                while let Some(rest) = p.strip_suffix(b"/") {
                    p = rest;
                }
            }
            _ => return Err(TarErrorKind::TrailingSlash),
        }
    }
    if p.is_empty() {
        return Err(TarErrorKind::EmptyName);
    }
    for comp in p.split(|&b| b == b'/') {
        match comp {
            b".." => return Err(TarErrorKind::DotDot),
            b"" | b"." => return Err(TarErrorKind::NotNormal),
            _ => {}
        }
    }
    Ok(p.to_vec())
}

impl Header {
    /// The path for messages: UTF-8, with any invalid byte replaced.
    pub fn path_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.path)
    }

    /// Parses and validates one non-zero header block.
    ///
    /// Refuses what PostgreSQL never writes and a careless reader would get wrong: PAX `x`/`g`
    /// extended headers, GNU `L`/`K` long names, hard links, GNU sparse and multi-volume
    /// entries, a non-ustar magic, a bad checksum, absolute paths, `..` components and NULs
    /// inside names.
    pub fn parse(block: &[u8; BLOCK_LEN]) -> Result<Header, TarErrorKind> {
        let posix = match &block[257..263] {
            b"ustar\0" => true,
            b"ustar " => false,
            other => return Err(TarErrorKind::BadMagic { magic: other.to_vec() }),
        };
        let stored = number(block, 148..156, "chksum")?;
        let (unsigned, signed) = header_checksums(block);
        if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
            return Err(TarErrorKind::BadChecksum { stored, computed: unsigned });
        }
        let typeflag = block[156];
        let kind = match typeflag {
            b'0' | 0 => EntryKind::File,
            b'5' => EntryKind::Directory,
            b'2' => EntryKind::Symlink,
            b'1' => return Err(TarErrorKind::Unsupported { typeflag, what: "hard link" }),
            b'x' | b'g' | b'X' => {
                return Err(TarErrorKind::Unsupported { typeflag, what: "PAX extended header" });
            }
            b'L' | b'K' | b'N' => {
                return Err(TarErrorKind::Unsupported { typeflag, what: "GNU long name or link" });
            }
            b'S' | b'M' | b'V' | b'D' => {
                return Err(TarErrorKind::Unsupported { typeflag, what: "GNU extension entry" });
            }
            t => EntryKind::Other(t),
        };
        let mode = number(block, 100..108, "mode")?;
        let mode = u32::try_from(mode).map_err(|_| TarErrorKind::BadNumber { field: "mode" })?;
        let uid = number(block, 108..116, "uid")?;
        let gid = number(block, 116..124, "gid")?;
        let size = number(block, 124..136, "size")?;
        let mtime = number(block, 136..148, "mtime")?;

        let name = c_field(&block[..100]).map_err(|()| TarErrorKind::NulInName { field: "name" })?;
        let mut raw = Vec::with_capacity(256);
        if posix {
            let prefix =
                c_field(&block[345..500]).map_err(|()| TarErrorKind::NulInName { field: "prefix" })?;
            if !prefix.is_empty() {
                raw.extend_from_slice(prefix);
                raw.push(b'/');
            }
        }
        raw.extend_from_slice(name);
        let path = normalise_path(raw, kind)?;

        let link = c_field(&block[157..257]).map_err(|()| TarErrorKind::NulInName { field: "linkname" })?;
        let link_target = match kind {
            EntryKind::Symlink => {
                if link.is_empty() {
                    return Err(TarErrorKind::EmptyLinkTarget);
                }
                Some(
                    String::from_utf8(link.to_vec())
                        .map_err(|_| TarErrorKind::NotUtf8 { field: "linkname" })?,
                )
            }
            _ => None,
        };
        if size != 0 && matches!(kind, EntryKind::Directory | EntryKind::Symlink) {
            return Err(TarErrorKind::SizeOnNonFile { size });
        }
        let text = |r: std::ops::Range<usize>| {
            let f = &block[r];
            String::from_utf8_lossy(&f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())]).into_owned()
        };
        Ok(Header {
            path,
            kind,
            mode,
            uid,
            gid,
            size,
            mtime,
            link_target,
            uname: text(265..297),
            gname: text(297..329),
        })
    }

    /// Number of padding bytes after this entry's data (to the next 512-byte boundary).
    pub fn padding(&self) -> u64 {
        (BLOCK_LEN as u64 - self.size % BLOCK_LEN as u64) % BLOCK_LEN as u64
    }
}
