//! Per-file checksums as `backup_manifest` records them, computed while the bytes stream past.
//!
//! Implements `src/common/checksum_helper.c` (`pg_checksum_init`, `pg_checksum_update`,
//! `pg_checksum_final`): CRC-32C or SHA-224/256/384/512 over the file content as sent, written
//! in the manifest as lowercase hex. The CRC is the 4-byte `pg_crc32c` in the server's memory
//! order, i.e. `hex(crc.to_le_bytes())` on the little-endian servers PostgreSQL runs on.

use std::fmt;

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// A per-file checksum algorithm (`MANIFEST_CHECKSUMS` of `BASE_BACKUP`; `pg_checksum_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumAlgorithm {
    /// No per-file checksum (`Checksum-Algorithm` and `Checksum` omitted).
    None,
    /// CRC-32C (Castagnoli), PostgreSQL's default.
    #[default]
    Crc32c,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl ChecksumAlgorithm {
    /// Every algorithm, in PostgreSQL's order.
    pub const ALL: [ChecksumAlgorithm; 6] = [
        ChecksumAlgorithm::None,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Sha224,
        ChecksumAlgorithm::Sha256,
        ChecksumAlgorithm::Sha384,
        ChecksumAlgorithm::Sha512,
    ];

    /// The name used in the manifest and in `BASE_BACKUP` (`pg_checksum_type_name`).
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::None => "NONE",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Sha224 => "SHA224",
            ChecksumAlgorithm::Sha256 => "SHA256",
            ChecksumAlgorithm::Sha384 => "SHA384",
            ChecksumAlgorithm::Sha512 => "SHA512",
        }
    }

    /// Parses a name, case-insensitively like `pg_checksum_parse_type`.
    pub fn from_name(name: &str) -> Option<ChecksumAlgorithm> {
        ChecksumAlgorithm::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Length of the checksum in bytes (0 for `None`).
    pub fn len(self) -> usize {
        match self {
            ChecksumAlgorithm::None => 0,
            ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Sha224 => 28,
            ChecksumAlgorithm::Sha256 => 32,
            ChecksumAlgorithm::Sha384 => 48,
            ChecksumAlgorithm::Sha512 => 64,
        }
    }

    /// Whether this is `None` (no checksum bytes).
    pub fn is_empty(self) -> bool {
        self == ChecksumAlgorithm::None
    }

    /// The algorithm whose checksums are `len` bytes long (the lengths are all distinct).
    pub fn from_len(len: usize) -> Option<ChecksumAlgorithm> {
        ChecksumAlgorithm::ALL.into_iter().find(|a| a.len() == len)
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A checksum value: its algorithm and raw bytes (compact; `None` holds no bytes).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Checksum {
    algorithm: ChecksumAlgorithm,
    bytes: Box<[u8]>,
}

/// Why a checksum string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumHexError {
    /// A character that is not a hex digit, or an odd number of digits.
    #[error("checksum {0:?} is not an even number of hex digits")]
    NotHex(String),
    /// The length matches no algorithm, or not the expected one.
    #[error("checksum has {digits} hex digits, {algorithm} needs {expected}")]
    Length {
        /// The algorithm the checksum was meant for.
        algorithm: ChecksumAlgorithm,
        /// Hex digits found.
        digits: usize,
        /// Hex digits expected.
        expected: usize,
    },
    /// The length matches no algorithm (when the algorithm is inferred from the length).
    #[error("checksum has {0} hex digits, which matches no algorithm (0, 8, 56, 64, 96 or 128)")]
    UnknownLength(usize),
}

impl Checksum {
    /// The empty checksum of `ChecksumAlgorithm::None`.
    pub fn none() -> Checksum {
        Checksum { algorithm: ChecksumAlgorithm::None, bytes: Box::default() }
    }

    /// A checksum from raw bytes, which must have the algorithm's length.
    pub fn from_bytes(algorithm: ChecksumAlgorithm, bytes: &[u8]) -> Result<Checksum, ChecksumHexError> {
        if bytes.len() != algorithm.len() {
            return Err(ChecksumHexError::Length {
                algorithm,
                digits: bytes.len() * 2,
                expected: algorithm.len() * 2,
            });
        }
        Ok(Checksum { algorithm, bytes: bytes.into() })
    }

    /// Decodes hex (either case) for `algorithm`, checking the length first.
    pub fn from_hex(algorithm: ChecksumAlgorithm, text: &str) -> Result<Checksum, ChecksumHexError> {
        if text.len() != algorithm.len() * 2 {
            if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ChecksumHexError::NotHex(truncate(text)));
            }
            return Err(ChecksumHexError::Length {
                algorithm,
                digits: text.len(),
                expected: algorithm.len() * 2,
            });
        }
        let bytes = hex::decode(text).map_err(|_| ChecksumHexError::NotHex(truncate(text)))?;
        Ok(Checksum { algorithm, bytes: bytes.into_boxed_slice() })
    }

    /// Decodes hex, inferring the algorithm from its length ("" is `None`).
    pub fn from_hex_any(text: &str) -> Result<Checksum, ChecksumHexError> {
        if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ChecksumHexError::NotHex(truncate(text)));
        }
        let algorithm =
            ChecksumAlgorithm::from_len(text.len() / 2).ok_or(ChecksumHexError::UnknownLength(text.len()))?;
        Checksum::from_hex(algorithm, text)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    /// The raw checksum bytes (empty for `None`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Lowercase hex, as the manifest writes it.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.bytes)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.algorithm == ChecksumAlgorithm::None {
            f.write_str("NONE")
        } else {
            write!(f, "{}:{}", self.algorithm, self.to_hex())
        }
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Keeps error messages short when the input is long.
fn truncate(text: &str) -> String {
    truncate_to(text, 140)
}

/// `text` cut to at most `max` bytes (on a character boundary), with `…` when cut.
pub(crate) fn truncate_to(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Size and checksum of one file, as computed by [`FileHasher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Bytes hashed.
    pub size: u64,
    /// The checksum (algorithm `None` when none was computed).
    pub checksum: Checksum,
}

#[derive(Clone)]
enum State {
    None,
    Crc32c(u32),
    Sha224(Sha224),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

/// Streaming size and checksum of one file's content: feed it in any split with
/// [`update`](FileHasher::update), then [`finish`](FileHasher::finish).
#[derive(Clone)]
pub struct FileHasher {
    size: u64,
    state: State,
}

impl fmt::Debug for FileHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileHasher").field("algorithm", &self.algorithm()).field("size", &self.size).finish()
    }
}

impl FileHasher {
    /// A hasher for `algorithm` (`None` counts bytes only).
    pub fn new(algorithm: ChecksumAlgorithm) -> FileHasher {
        let state = match algorithm {
            ChecksumAlgorithm::None => State::None,
            ChecksumAlgorithm::Crc32c => State::Crc32c(0),
            ChecksumAlgorithm::Sha224 => State::Sha224(Sha224::new()),
            ChecksumAlgorithm::Sha256 => State::Sha256(Sha256::new()),
            ChecksumAlgorithm::Sha384 => State::Sha384(Sha384::new()),
            ChecksumAlgorithm::Sha512 => State::Sha512(Sha512::new()),
        };
        FileHasher { size: 0, state }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> ChecksumAlgorithm {
        match self.state {
            State::None => ChecksumAlgorithm::None,
            State::Crc32c(_) => ChecksumAlgorithm::Crc32c,
            State::Sha224(_) => ChecksumAlgorithm::Sha224,
            State::Sha256(_) => ChecksumAlgorithm::Sha256,
            State::Sha384(_) => ChecksumAlgorithm::Sha384,
            State::Sha512(_) => ChecksumAlgorithm::Sha512,
        }
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds the next piece of the file.
    pub fn update(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        match &mut self.state {
            State::None => {}
            State::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
            State::Sha224(h) => h.update(data),
            State::Sha256(h) => h.update(data),
            State::Sha384(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
    }

    /// Size and checksum of everything fed.
    pub fn finish_digest(self) -> FileDigest {
        let algorithm = self.algorithm();
        let bytes: Box<[u8]> = match self.state {
            State::None => Box::default(),
            // pg_checksum_final memcpy()s the pg_crc32c: its in-memory (little-endian) bytes.
            State::Crc32c(crc) => Box::new(crc.to_le_bytes()),
            State::Sha224(h) => h.finalize().as_slice().into(),
            State::Sha256(h) => h.finalize().as_slice().into(),
            State::Sha384(h) => h.finalize().as_slice().into(),
            State::Sha512(h) => h.finalize().as_slice().into(),
        };
        FileDigest { size: self.size, checksum: Checksum { algorithm, bytes } }
    }

    /// `(size, checksum as the manifest writes it)`: lowercase hex, `""` for `None`.
    pub fn finish(self) -> (u64, String) {
        let digest = self.finish_digest();
        (digest.size, digest.checksum.to_hex())
    }
}

/// SHA-256 of `data` (the Manifest-Checksum algorithm, whatever the per-file one).
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(Sha256::digest(data).as_slice());
    out
}
