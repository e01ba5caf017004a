//! Unit tests on the real PostgreSQL 14 and 15 recordings of `fixtures/`.

use std::io::Write;

use pg_basebackup::summary::{Chunking, decode_pieces, split};
use proptest::prelude::*;

use crate::*;

/// A protocol message: tag, length, body.
fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The metadata and response chunks of `fixtures/pg<major>.pgrec.gz`.
fn fixture(major: u32) -> (RecordingMeta, Vec<Vec<u8>>) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../fixtures/pg{major}.pgrec.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    response_chunks(std::io::BufReader::new(file)).unwrap()
}

#[test]
fn recording_round_trip_and_replay() {
    let (mut meta, chunks) = fixture(15);
    meta.meta = serde_json::json!({"test": "round trip"});
    let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
    w.record(Direction::Server, 1, &msg(b'Z', b"I")).unwrap(); // an earlier command's answer
    w.mark(2, BASE_BACKUP_MARK).unwrap();
    w.record(Direction::Client, 3, &msg(b'Q', b"BASE_BACKUP\0")).unwrap();
    let bytes = chunks.concat();
    for (i, piece) in bytes.chunks(777).enumerate() {
        w.record(Direction::Server, 10 + i as u64, piece).unwrap();
    }
    w.record(Direction::Client, 99, &msg(b'Q', b"IDENTIFY_SYSTEM\0")).unwrap();
    w.record(Direction::Server, 100, b"unrelated").unwrap();
    let rec = w.into_inner().unwrap();
    assert!(rec.starts_with(b"PGPRECv1\n"));

    let mut r = RecordingReader::new(&rec[..]).unwrap();
    assert_eq!(r.meta(), &meta);
    let first = r.next_record().unwrap().unwrap();
    assert_eq!((first.direction, first.nanos), (Direction::Server, 1));

    let expected = decode_pieces(meta.decoder_options(), [&bytes[..]]);
    assert!(expected.done && expected.error.is_none() && expected.manifest.is_some(), "{:?}", expected.error);
    for chunking in [Chunking::AsRecorded, Chunking::Fixed(4096), Chunking::Random { seed: 3, max: 70_000 }] {
        assert_eq!(replay(&rec[..], chunking).unwrap(), expected, "{chunking:?}");
    }
    // Damaged recordings.
    assert!(matches!(RecordingReader::new(&b"PGPRECv2\n"[..]), Err(RecordingError::BadMagic)));
    let truncated = &rec[..rec.len() - 3];
    assert!(replay(truncated, Chunking::AsRecorded).is_err());
    let mut bad_dir = rec.clone();
    let first_record = 13 + u32::from_be_bytes(rec[9..13].try_into().unwrap()) as usize;
    bad_dir[first_record] = b'X';
    assert!(replay(&bad_dir[..], Chunking::AsRecorded).unwrap_err().to_string().contains("direction"));

    // The same recording gzip-compressed (one or two members) replays alike.
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let (a, b) = rec.split_at(rec.len() / 2);
    for compressed in [gz(&rec), [gz(a), gz(b)].concat()] {
        assert_eq!(RecordingReader::new(&compressed[..]).unwrap().meta(), &meta);
        for chunking in [Chunking::AsRecorded, Chunking::Random { seed: 5, max: 70_000 }] {
            assert_eq!(replay(&compressed[..], chunking).unwrap(), expected, "gzip {chunking:?}");
        }
        let truncated = &compressed[..compressed.len() - 20];
        assert!(replay(truncated, Chunking::AsRecorded).map_or(true, |s| !s.done));
    }
    // response_chunks: the server reads after the marker, up to the next command.
    let (m, chunks) = response_chunks(&rec[..]).unwrap();
    assert_eq!(m, meta);
    assert_eq!(chunks.concat(), bytes);
    assert!(chunks.iter().all(|c| c.len() <= 777));
    // Too short to hold a magic, plain or gzip.
    for short in [&b""[..], b"P", b"\x1f", b"\x1f\x8b", b"PGPREC"] {
        assert!(matches!(RecordingReader::new(short), Err(RecordingError::BadMagic)), "{short:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Replay re-cuts recorded reads of any sizes into exactly the pieces `split` gives the
    /// concatenated stream: same summary, whatever the record sizes and the chunking.
    #[test]
    fn replay_rechunking_matches_split(
        record_sizes in proptest::collection::vec(1usize..200_000, 1..40),
        seed in any::<u64>(),
        max in 1usize..300_000,
        fixed in 1usize..300_000,
    ) {
        let (meta, chunks) = fixture(14);
        let bytes = chunks.concat();
        let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
        w.mark(0, BASE_BACKUP_MARK).unwrap();
        let mut rest = &bytes[..];
        let mut sizes = record_sizes.iter().cycle();
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at((*sizes.next().unwrap()).min(rest.len()));
            w.record(Direction::Server, 1, piece).unwrap();
            rest = tail;
        }
        let rec = w.into_inner().unwrap();
        for chunking in [Chunking::Fixed(fixed), Chunking::Random { seed, max }] {
            let direct = decode_pieces(meta.decoder_options(), split(&bytes, chunking));
            prop_assert!(direct.done);
            prop_assert_eq!(replay(&rec[..], chunking).unwrap(), direct);
        }
    }
}

/// Issue 13: a record header declaring 16 MiB followed by a few bytes must not make the reader
/// allocate 16 MiB. Observed through the largest buffer the reader offers to `read`.
#[test]
fn recording_payload_grows_with_bytes_received() {
    struct Spy<'a> {
        data: &'a [u8],
        largest: usize,
    }
    impl std::io::Read for Spy<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.largest = self.largest.max(buf.len());
            self.data.read(buf)
        }
    }
    let meta = RecordingMeta {
        server_major: 15,
        server_version: "15".into(),
        command: "BASE_BACKUP".into(),
        manifest: false,
        compression: Compression::None,
        meta: serde_json::Value::Null,
    };
    let mut rec = RecordingWriter::new(Vec::new(), &meta).unwrap().into_inner().unwrap();
    rec.push(b'S');
    rec.extend_from_slice(&0u64.to_be_bytes());
    rec.extend_from_slice(&crate::MAX_RECORD_LEN.to_be_bytes());
    rec.extend_from_slice(b"only ten b");
    let mut spy = Spy { data: &rec, largest: 0 };
    let mut r = RecordingReader::new(&mut spy).unwrap();
    let err = r.next_record().unwrap_err().to_string();
    assert!(err.contains("truncated payload"), "{err}");
    drop(r);
    assert!(spy.largest < 64 * 1024, "the reader offered a {} byte buffer", spy.largest);
}

#[test]
fn recording_fuzz_regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/recording");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            fuzzing::recording(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    assert!(n >= 2, "the committed seeds are missing");
    // A recording made here, plain and gzip, through the target.
    let meta = RecordingMeta {
        server_major: 16,
        server_version: "16".into(),
        command: "BASE_BACKUP".into(),
        manifest: false,
        compression: Compression::None,
        meta: serde_json::json!({"n": 1.5, "s": "é"}),
    };
    let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
    w.mark(1, BASE_BACKUP_MARK).unwrap();
    w.record(Direction::Server, 2, &[msg(b'Z', b"I"), msg(b'Z', b"I")].concat()).unwrap();
    let rec = w.into_inner().unwrap();
    fuzzing::recording(&rec);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&rec).unwrap();
    fuzzing::recording(&e.finish().unwrap());
}

/// Found by the `recording` fuzz target: an empty record (here an empty marker) was written as
/// nothing at all, so a recording read back lost it.
#[test]
fn empty_records_round_trip() {
    let (meta, _) = fixture(15);
    let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
    w.mark(1 << 48, "").unwrap();
    w.record(Direction::Server, 2, b"").unwrap();
    w.record(Direction::Client, 3, b"x").unwrap();
    let rec = w.into_inner().unwrap();
    let mut r = RecordingReader::new(&rec[..]).unwrap();
    let mut got = Vec::new();
    while let Some(record) = r.next_record().unwrap() {
        got.push((record.direction, record.nanos, record.data));
    }
    assert_eq!(
        got,
        [
            (Direction::Mark, 1 << 48, Vec::new()),
            (Direction::Server, 2, Vec::new()),
            (Direction::Client, 3, b"x".to_vec())
        ]
    );
}
