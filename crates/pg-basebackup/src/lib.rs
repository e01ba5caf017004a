//! Sans-IO decoder of a `BASE_BACKUP` response on a replication connection.
//!
//! Give a [`Decoder`] the backend messages that follow the `BASE_BACKUP` query (as
//! [`pg_wire::Frame`]s or raw bytes) and pull [`Event`]s: the start position and tablespace
//! list, one archive per tablespace (main data directory last) as tar entries with zero-copy
//! data, progress, the `backup_manifest` as pass-through chunks, notices, the end position, and
//! [`Event::Done`] only once the final `CommandComplete` and `ReadyForQuery` arrived (a
//! page-checksum failure `XX001` comes as an `ErrorResponse` after all the data).
//!
//! Both protocol generations are handled (`docs/protocol.md` §4): PostgreSQL 10–14 send one
//! COPY per tablespace of raw, unterminated tar (plus, 13/14, one COPY with the manifest);
//! 15–18 send one COPY whose CopyData start with a type byte `n`/`d`/`p`/`m`
//! (`src/backend/backup/basebackup_copy.c`), optionally with server-side gzip, LZ4 or zstd
//! compression of each archive, decoded here ([`Compression`]).
//!
//! [`summary`] decodes a response fed in arbitrary pieces into a comparable summary (tests,
//! fuzzing, replays). The file format for recorded sessions is the `pg-recording` crate.

mod compress;
mod decoder;
mod msg;
pub mod summary;

pub use compress::{Compression, DecompressError, MAX_GZIP_HEADER, MAX_ZSTD_WINDOW};
pub use decoder::{ArchiveInfo, DecodeError, Decoder, DecoderOptions, Entry, Event, TablespaceInfo};
/// A WAL location; the same type as [`pg_wire::replication::Lsn`].
pub use pg_wire::replication::Lsn;

#[doc(hidden)]
pub mod fuzzing {
    //! Entry point of the `basebackup` fuzz target, also replayed by the crate's tests.

    use crate::summary::{Chunking, decode_pieces, pieces};
    use crate::{Compression, DecodeError, DecoderOptions};

    /// Options chosen by the first input byte: major 12…18, manifest, compression.
    pub fn options(b: u8) -> DecoderOptions {
        let server_major = 12 + u32::from(b % 7);
        let manifest = server_major >= 13 && b & 0x08 != 0;
        let compression = if server_major >= 15 {
            [Compression::None, Compression::Gzip, Compression::Lz4, Compression::Zstd]
                [usize::from(b >> 4) % 4]
        } else {
            Compression::None
        };
        DecoderOptions { server_major, manifest, compression }
    }

    /// Decodes `data[2..]` as a response with options from `data[0]`, once in one piece and
    /// once in pieces whose sizes come from `data[1]`: both must summarise alike (chunk-split
    /// equivalence: same entries, sizes, SHA-256s, manifest, positions and error). Checks the
    /// summary's invariants.
    pub fn decode(data: &[u8]) {
        let [opt, chunk, rest @ ..] = data else { return };
        let opts = options(*opt);
        let chunking = match *chunk {
            0 => Chunking::Fixed(1),
            c if c < 128 => Chunking::Fixed(usize::from(c)),
            c => Chunking::Random { seed: u64::from(c), max: 300 },
        };
        let whole = decode_pieces(opts, [rest]);
        let s = decode_pieces(opts, pieces(rest, chunking));
        assert_eq!(whole, s, "the decoder's output depends on how the input is split");
        if s.done {
            assert!(s.end.is_some() && s.start.is_some());
            // `Done` comes with ReadyForQuery; the only error that can follow it is for bytes
            // after ReadyForQuery (then `finish` fails too).
            if let Some(e) = &s.error {
                assert!(
                    matches!(
                        e,
                        DecodeError::Unexpected { state: "after ReadyForQuery (backup complete)", .. }
                    ),
                    "an error after Done: {e}"
                );
            }
            assert!(s.archives.iter().all(|a| a.complete));
            assert_eq!(s.archives.len(), s.tablespaces.len());
        }
        for a in &s.archives {
            for e in &a.entries {
                assert!(!e.path.is_empty() && !e.path.starts_with('/'));
                assert!(e.path.split('/').all(|c| !c.is_empty() && c != "." && c != ".."), "{:?}", e.path);
            }
        }
        std::hint::black_box(&s);
        std::hint::black_box(s.error.map(|e| e.to_string()));
    }
}

#[cfg(test)]
mod tests;
