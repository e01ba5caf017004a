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
//! [`recording`] defines a file format for the raw bytes of a backup session and replays them
//! through the decoder.

mod compress;
mod decoder;
mod msg;
pub mod recording;

pub use compress::{Compression, DecompressError, MAX_GZIP_HEADER, MAX_ZSTD_WINDOW};
pub use decoder::{ArchiveInfo, DecodeError, Decoder, DecoderOptions, Entry, Event, TablespaceInfo};
/// A WAL location; the same type as [`pg_wire::replication::Lsn`].
pub use pg_wire::replication::Lsn;

#[doc(hidden)]
pub mod fuzzing {
    //! Entry points of the `basebackup` and `recording` fuzz targets, also replayed by the
    //! crate's tests.

    use crate::recording::{
        Chunking, Record, RecordingReader, RecordingWriter, decode_pieces, replay, split,
    };
    use crate::{Compression, DecoderOptions};

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
        let s = decode_pieces(opts, split(rest, chunking));
        assert_eq!(whole, s, "the decoder's output depends on how the input is split");
        if s.done {
            assert!(s.error.is_none() && s.end.is_some() && s.start.is_some());
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

    /// `recording` target: reads `data` as a recording (plain or gzip). What it reads must write
    /// back through [`RecordingWriter`] and read again identically (round trip), and its replay
    /// must not depend on how the response is re-cut (chunk-split equivalence).
    pub fn recording(data: &[u8]) {
        let mut reader = match RecordingReader::new(data) {
            Ok(r) => r,
            Err(e) => {
                std::hint::black_box(e.to_string());
                return;
            }
        };
        let meta = reader.meta().clone();
        let mut records: Vec<Record> = Vec::new();
        let end = loop {
            match reader.next_record() {
                Ok(Some(r)) => records.push(r),
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        let mut w = RecordingWriter::new(Vec::new(), &meta).expect("read metadata writes back");
        for r in &records {
            w.record(r.direction, r.nanos, &r.data).expect("writing to a Vec");
        }
        let written = w.into_inner().expect("writing to a Vec");
        let mut again = RecordingReader::new(&written[..]).expect("a written recording reads");
        assert_eq!(again.meta(), &meta, "metadata round trip");
        for r in &records {
            assert_eq!(again.next_record().expect("round trip").as_ref(), Some(r), "record round trip");
        }
        assert!(again.next_record().expect("round trip").is_none());
        if end.is_none() {
            let a = replay(data, Chunking::AsRecorded).map_err(|e| e.to_string());
            let b = replay(data, Chunking::Random { seed: data.len() as u64, max: 97 })
                .map_err(|e| e.to_string());
            assert_eq!(a, b, "replay depends on the chunking");
        }
        std::hint::black_box(end);
    }
}

#[cfg(test)]
mod tests;
