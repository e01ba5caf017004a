//! Real `BASE_BACKUP` sessions of PostgreSQL 12-18 (`fixtures/pg<major>.pgrec.gz`, made by
//! `cargo run -p pg-physical --example record_fixtures`, see `fixtures/README.md`) replayed
//! through the decoder without a server: identical summaries whatever the chunking, the expected
//! entries, the manifest (13+) verified offline against the received bytes, truncations refused,
//! a flipped data byte caught by the manifest.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use pg_backup_manifest::{ChecksumAlgorithm, FileHasher, Mismatch, Verifier};
use pg_basebackup::summary::{Chunking, Summary, decode_pieces};
use pg_basebackup::{Compression, DecodeError, Decoder, DecoderOptions, Event};
use pg_recording::{
    BASE_BACKUP_MARK, Direction, RecordingMeta, RecordingReader, RecordingWriter, replay, response_chunks,
};
use pg_tar::EntryKind;
use sha2::{Digest, Sha256};

/// Every major with a committed recording.
const MAJORS: std::ops::RangeInclusive<u32> = 12..=18;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture_path(major: u32) -> PathBuf {
    repo_root().join(format!("fixtures/pg{major}.pgrec.gz"))
}

/// A recording's metadata and its response stream (server bytes after the marker).
struct Fixture {
    major: u32,
    meta: RecordingMeta,
    chunks: Vec<Vec<u8>>,
    stream: Vec<u8>,
}

impl Fixture {
    fn load(major: u32) -> Fixture {
        let path = fixture_path(major);
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (meta, chunks) = response_chunks(std::io::BufReader::new(file)).unwrap();
        let stream = chunks.concat();
        Fixture { major, meta, chunks, stream }
    }

    fn options(&self) -> DecoderOptions {
        self.meta.decoder_options()
    }

    fn decode_whole(&self) -> Summary {
        decode_pieces(self.options(), [&self.stream[..]])
    }

    /// The checksum algorithm the recorded command asked for (`MANIFEST_CHECKSUMS '…'`).
    fn manifest_algorithm(&self) -> ChecksumAlgorithm {
        let cmd = &self.meta.command;
        let at = cmd.find("MANIFEST_CHECKSUMS").unwrap_or_else(|| panic!("no MANIFEST_CHECKSUMS in {cmd}"));
        let name = cmd[at..].split('\'').nth(1).unwrap();
        ChecksumAlgorithm::from_name(name).unwrap_or_else(|| panic!("unknown algorithm {name:?}"))
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn replay_file(major: u32, chunking: Chunking) -> Summary {
    let file = std::fs::File::open(fixture_path(major)).unwrap();
    replay(std::io::BufReader::new(file), chunking).unwrap()
}

/// The recording's metadata describes what was asked, and the response decodes to `Done`.
fn check_metadata_and_completion(f: &Fixture, s: &Summary) {
    assert_eq!(f.meta.server_major, f.major);
    assert!(f.meta.server_version.starts_with(&format!("{}.", f.major)), "{}", f.meta.server_version);
    assert_eq!(f.meta.manifest, f.major >= 13);
    assert_eq!(f.meta.compression, Compression::None);
    assert!(f.meta.command.starts_with("BASE_BACKUP"), "{}", f.meta.command);
    assert!(s.error.is_none(), "PostgreSQL {}: {:?}", f.major, s.error);
    assert!(s.done, "PostgreSQL {}: no Done", f.major);
    let (start, tli) = s.start.unwrap();
    let (end, end_tli) = s.end.unwrap();
    assert!(start <= end && tli == 1 && end_tli == 1, "{start} {end}");
    assert_eq!(s.manifest.is_some(), f.major >= 13);
    assert!(!s.progress.is_empty() || f.major < 15, "15+ sends progress messages");
    assert!(s.progress.windows(2).all(|w| w[0] <= w[1]));
}

/// The same summary whatever the chunking: as recorded (streamed from the gzip file), whole,
/// one byte at a time for a prefix, fixed and pseudo-random pieces.
fn check_chunkings(f: &Fixture, whole: &Summary) {
    assert!(f.chunks.len() > 10, "the response came in many reads");
    assert_eq!(&replay_file(f.major, Chunking::AsRecorded), whole, "as recorded");
    assert_eq!(&decode_pieces(f.options(), f.chunks.iter().map(Vec::as_slice)), whole, "recorded reads");
    // One byte at a time through the result sets, the first archive's headers and beyond.
    let prefix = 96 * 1024;
    let (head, tail) = f.stream.split_at(prefix.min(f.stream.len()));
    let bytewise = decode_pieces(f.options(), head.chunks(1).chain([tail]));
    assert_eq!(&bytewise, whole, "1-byte prefix");
    assert_eq!(&replay_file(f.major, Chunking::Fixed(7919)), whole, "fixed 7919");
    let seed = 0x5eed_0000 + u64::from(f.major);
    assert_eq!(&replay_file(f.major, Chunking::Random { seed, max: 3000 }), whole, "random");
}

/// The entries a backup of the fixture cluster must contain.
fn check_entries(f: &Fixture, s: &Summary) {
    assert_eq!(s.tablespaces.len(), 2, "{:?}", s.tablespaces);
    assert_eq!(s.archives.len(), 2);
    assert!(s.archives.iter().all(|a| a.complete));
    let (ts, base) = (&s.archives[0], &s.archives[1]);
    let oid = ts.tablespace_oid.expect("the first archive is the tablespace's");
    assert_eq!(ts.name, format!("{oid}.tar"));
    assert_eq!(base.name, "base.tar");
    assert_eq!(base.tablespace_oid, None);
    assert!(base.entries.len() > 900, "{} entries", base.entries.len());

    let find = |path: &str| base.entries.iter().find(|e| e.path == path);
    let file = |path: &str| {
        let e = find(path).unwrap_or_else(|| panic!("PostgreSQL {}: no {path}", f.major));
        assert_eq!(e.kind, EntryKind::File, "{path}");
        e
    };
    let version = file("PG_VERSION");
    assert_eq!(version.sha256, sha256_hex(format!("{}\n", f.major).as_bytes()), "PG_VERSION");
    assert!(file("backup_label").size > 100);
    assert_eq!(file("global/pg_control").size, 8192);
    assert_eq!(file("odd name é #1.txt").sha256, sha256_hex(b"odd\n"));
    // Fetch mode: the WAL from the start position is in the archive.
    let wal: Vec<_> =
        base.entries.iter().filter(|e| e.path.starts_with("pg_wal/") && e.size == 1 << 20).collect();
    assert!(!wal.is_empty(), "no 1 MB WAL segment in pg_wal/");
    let link = find(&format!("pg_tblspc/{oid}")).expect("tablespace link");
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(link.link_target.as_deref(), s.tablespaces[0].location.as_deref());

    // The tablespace: PG_<major>_<catversion>/<db>/<relfilenode> with the 500 rows.
    let prefix = format!("PG_{}_", f.major);
    assert!(ts.entries.iter().all(|e| e.path.starts_with(&prefix)), "{:?}", ts.entries);
    let data: Vec<_> = ts.entries.iter().filter(|e| e.kind == EntryKind::File && e.size > 0).collect();
    assert!(!data.is_empty(), "no data file in the tablespace");
    assert!(data.iter().all(|e| e.size % 8192 == 0));
}

/// Decodes the stream and checks every file against the manifest with pg-backup-manifest;
/// `Err` lists the mismatches.
fn verify_manifest(f: &Fixture, stream: &[u8]) -> Result<u64, Vec<Mismatch>> {
    let algorithm = f.manifest_algorithm();
    let mut dec = Decoder::new(f.options()).unwrap();
    dec.feed_bytes(stream);
    let mut verifier = Verifier::new();
    let mut current: Option<(Vec<u8>, FileHasher)> = None;
    let mut manifest = Vec::new();
    let (mut start, mut end) = (None, None);
    let mut done = false;
    while let Some(ev) = dec.poll_event().unwrap() {
        match ev {
            Event::BackupStart { start_lsn, timeline, .. } => start = Some((start_lsn.0, timeline)),
            Event::EntryStart(e) if e.header.kind == EntryKind::File => {
                let path = match e.tablespace_oid {
                    Some(oid) => [format!("pg_tblspc/{oid}/").as_bytes(), &e.header.path].concat(),
                    None => e.header.path,
                };
                current = Some((path, FileHasher::new(algorithm)));
            }
            Event::EntryData(d) => {
                if let Some((_, h)) = current.as_mut() {
                    h.update(&d);
                }
            }
            Event::EntryEnd => {
                if let Some((path, h)) = current.take() {
                    verifier.file_received_digest(&path, h.finish_digest()).unwrap();
                }
            }
            Event::ManifestData(d) => manifest.extend_from_slice(&d),
            Event::BackupEnd { end_lsn, timeline } => end = Some((end_lsn.0, timeline)),
            Event::Done => done = true,
            _ => {}
        }
    }
    dec.finish().unwrap();
    assert!(done);
    let report = verifier.finish(&manifest, start, end)?;
    // Version 2 (with System-Identifier) since PostgreSQL 17.
    assert_eq!(report.manifest_version, if f.major >= 17 { 2 } else { 1 });
    assert_eq!(report.checksums_verified, report.files_verified);
    Ok(report.files_verified)
}

/// Offsets where the stream is cut: inside the first result set, the tablespace list, both
/// archives, the manifest, and one byte short of the end.
fn cut_points(len: usize) -> Vec<usize> {
    let mut cuts =
        vec![0, 1, 5, 40, 200, 1000, len / 7, len / 3, len / 2, len * 9 / 10, len - 100, len - 6, len - 1];
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ len as u64;
    for _ in 0..8 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        cuts.push((state % len as u64) as usize);
    }
    cuts
}

fn check_truncations(f: &Fixture) {
    for cut in cut_points(f.stream.len()) {
        let s = decode_pieces(f.options(), [&f.stream[..cut]]);
        assert!(!s.done, "PostgreSQL {}: cut at {cut} decoded as complete", f.major);
        match &s.error {
            Some(DecodeError::Truncated { offset, .. }) => assert!(*offset <= cut as u64, "{offset} > {cut}"),
            other => panic!("PostgreSQL {}: cut at {cut} of {}: {other:?}", f.major, f.stream.len()),
        }
        assert!(s.error.as_ref().unwrap().to_string().contains("offset") || cut == 0, "{:?}", s.error);
    }
}

/// A truncated recording file is an error or an incomplete backup, never a success.
fn check_truncated_file(f: &Fixture) {
    let gz = std::fs::read(fixture_path(f.major)).unwrap();
    for cut in [gz.len() / 2, gz.len() - 10] {
        match replay(&gz[..cut], Chunking::AsRecorded) {
            Ok(s) => assert!(!s.done && s.error.is_some(), "cut at {cut}: {s:?}"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

/// Flips one byte of the first `fixture row` in the stream: inside the tablespace's table file,
/// which comes before the main archive (and its WAL, which holds the rows too).
fn check_flipped_byte_is_caught(f: &Fixture) {
    let needle = b"fixture row ";
    let at = f.stream.windows(needle.len()).position(|w| w == needle).expect("rows in the stream");
    let mut bad = f.stream.clone();
    bad[at + 3] ^= 0x20;
    let s = decode_pieces(f.options(), [&bad[..]]);
    assert!(s.done, "the decoder does not look inside files: {:?}", s.error);
    let mismatches = verify_manifest(f, &bad).expect_err("a flipped byte must fail the manifest check");
    assert_eq!(mismatches.len(), 1, "{mismatches:?}");
    match &mismatches[0] {
        Mismatch::Checksum { path, .. } => {
            assert!(path.starts_with("pg_tblspc/"), "{path}");
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
}

fn check_fixture(major: u32) {
    let f = Fixture::load(major);
    let whole = f.decode_whole();
    check_metadata_and_completion(&f, &whole);
    check_chunkings(&f, &whole);
    check_entries(&f, &whole);
    if major >= 13 {
        let files = verify_manifest(&f, &f.stream).unwrap_or_else(|m| panic!("PostgreSQL {major}: {m:?}"));
        assert!(files > 900, "{files} files verified");
        check_flipped_byte_is_caught(&f);
    }
    check_truncations(&f);
    check_truncated_file(&f);
}

macro_rules! fixture_tests {
    ($($name:ident = $major:literal),* $(,)?) => {$(
        #[test]
        fn $name() {
            check_fixture($major);
        }
    )*};
}

fixture_tests!(pg12 = 12, pg13 = 13, pg14 = 14, pg15 = 15, pg16 = 16, pg17 = 17, pg18 = 18);

#[test]
fn every_major_has_a_fixture() {
    for major in MAJORS {
        let path = fixture_path(major);
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let r = RecordingReader::new(std::io::BufReader::new(file)).unwrap();
        assert_eq!(r.meta().server_major, major);
    }
}

/// A plain (uncompressed) copy of a recording replays the same as the gzip one.
#[test]
fn plain_and_gzip_recordings_replay_alike() {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(fixture_path(15)).unwrap())
        .read_to_end(&mut plain)
        .unwrap();
    assert!(plain.starts_with(pg_recording::MAGIC));
    let from_plain = replay(&plain[..], Chunking::AsRecorded).unwrap();
    assert!(from_plain.done);
    assert_eq!(from_plain, replay_file(15, Chunking::AsRecorded));
}

/// The shape of one real backup, for review when the decoder or the fixtures change: archives,
/// tablespaces, positions, and every entry outside the per-database directories.
#[test]
fn snapshot_pg16_summary() {
    let s = replay_file(16, Chunking::AsRecorded);
    let mut out = String::new();
    let (start, tli) = s.start.unwrap();
    let (end, _) = s.end.unwrap();
    out += &format!("start {start} timeline {tli}, end {end}, done {}\n", s.done);
    for t in &s.tablespaces {
        let loc = t.location.as_ref().map(|l| l.rsplit('/').next().unwrap_or(l));
        out += &format!("tablespace {:?} location …/{:?} size_kb {:?}\n", t.oid, loc, t.size_kb.is_some());
    }
    out += &format!("progress messages {}, notices {:?}\n", s.progress.len(), s.notices);
    let (mlen, msha) = s.manifest.clone().unwrap();
    out += &format!("manifest {mlen} bytes sha256 {msha}\n");
    for a in &s.archives {
        let bytes: u64 = a.entries.iter().map(|e| e.size).sum();
        out += &format!("archive {} ({} entries, {bytes} bytes)\n", a.name, a.entries.len());
        for e in a.entries.iter().filter(|e| !e.path.starts_with("base/") || e.path.matches('/').count() < 2)
        {
            let link = e.link_target.as_ref().map(|t| format!(" -> …/{}", t.rsplit('/').next().unwrap_or(t)));
            out += &format!(
                "  {:?} {} {} {}{}\n",
                e.kind,
                e.size,
                &e.sha256[..e.sha256.len().min(16)],
                e.path,
                link.unwrap_or_default()
            );
        }
    }
    insta::assert_snapshot!(out);
}

// ---------------------------------------------------------------------------------------------
// Fuzz seeds cut out of the recordings (rewritten with PGPLAKAR_REGENERATE_SEEDS=1).

/// Largest seed written.
const MAX_SEED: usize = 64 * 1024;

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The longest prefix of whole tar entries of `tar` that fits in `budget` bytes.
fn tar_prefix(tar: &[u8], budget: usize) -> &[u8] {
    let mut at = 0;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size_field = std::str::from_utf8(&header[124..136]).unwrap().trim_matches(['\0', ' ']);
        let size = usize::from_str_radix(size_field, 8).unwrap();
        let next = at + 512 + size.div_ceil(512) * 512;
        if next > budget {
            break;
        }
        at = next;
    }
    &tar[..at]
}

/// Frames of a stream.
fn frames(stream: &[u8]) -> Vec<(u8, Bytes)> {
    let mut framer = pg_wire::Framer::new(pg_wire::frame::MAX_MESSAGE_LEN);
    framer.feed(stream);
    let mut out = Vec::new();
    while let Some(f) = framer.next_frame().unwrap() {
        out.push((f.tag, f.body));
    }
    out
}

/// A short but complete response made from a real one: every archive cut to a prefix of whole
/// tar entries (the server's end-of-archive blocks kept where it sent them), progress and the
/// manifest left out (the seed's options do not ask for one). Returns it and the archives' tar
/// bytes.
fn shortened(f: &Fixture, per_archive: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let all = frames(&f.stream);
    let mut out = Vec::new();
    let mut tars: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    let mut copies = 0;
    let legacy = f.major < 15;
    let terminated = |tar: &[u8]| tar.len() >= 1024 && tar[tar.len() - 1024..].iter().all(|&b| b == 0);
    let emit_tar = |out: &mut Vec<u8>, tar: &[u8], prefix: &[u8]| {
        for piece in tar.chunks(4096) {
            let mut body = prefix.to_vec();
            body.extend_from_slice(piece);
            out.extend(frame(b'd', &body));
        }
    };
    while i < all.len() {
        let (tag, body) = &all[i];
        if *tag != b'H' {
            out.extend(frame(*tag, body));
            i += 1;
            continue;
        }
        // A COPY: collect it to its CopyDone.
        let end = i + all[i..].iter().position(|(t, _)| *t == b'c').unwrap();
        let copy = &all[i + 1..end];
        if legacy {
            copies += 1;
            if copies > 2 {
                // 13/14: the manifest's COPY, left out.
                i = end + 1;
                continue;
            }
            let tar: Vec<u8> = copy.iter().flat_map(|(_, b)| b.to_vec()).collect();
            let mut cut = tar_prefix(&tar, per_archive).to_vec();
            if terminated(&tar) {
                cut.extend([0u8; 1024]);
            }
            out.extend(frame(b'H', body));
            emit_tar(&mut out, &cut, b"");
            out.extend(frame(b'c', b""));
            tars.push(cut);
        } else {
            out.extend(frame(b'H', body));
            let mut archives: Vec<(Bytes, Vec<u8>)> = Vec::new();
            for (_, d) in copy {
                match d.first() {
                    Some(b'n') => archives.push((d.clone(), Vec::new())),
                    Some(b'd') if !archives.is_empty() && tars.len() < 2 => {
                        archives.last_mut().unwrap().1.extend_from_slice(&d[1..]);
                    }
                    Some(b'm') => break,
                    _ => {}
                }
            }
            for (n, tar) in archives {
                let mut cut = tar_prefix(&tar, per_archive).to_vec();
                if terminated(&tar) {
                    cut.extend([0u8; 1024]);
                }
                out.extend(frame(b'd', &n));
                emit_tar(&mut out, &cut, b"d");
                tars.push(cut);
            }
            out.extend(frame(b'c', b""));
        }
        i = end + 1;
    }
    (out, tars)
}

/// The fuzz target's option byte for `major`, no manifest, no compression.
fn option_byte(major: u32) -> u8 {
    let b = (0u8..=0x07).find(|b| 12 + u32::from(b % 7) == major).unwrap();
    let o = pg_basebackup::fuzzing::options(b);
    assert!(o.server_major == major && !o.manifest && o.compression == Compression::None);
    b
}

fn seeds() -> Vec<(String, Vec<u8>, &'static str)> {
    let mut out = Vec::new();
    for (major, chunk) in [(12u32, 0u8), (14, 61), (16, 200), (18, 1)] {
        let f = Fixture::load(major);
        let (stream, tars) = shortened(&f, 20 * 1024);
        let opt = option_byte(major);
        let mut seed = vec![opt, chunk];
        seed.extend_from_slice(&stream);
        out.push((format!("seed-real-pg{major}-short"), seed.clone(), "basebackup"));
        let cut = seed.len() * 2 / 3;
        out.push((format!("seed-real-pg{major}-short-truncated"), seed[..cut].to_vec(), "basebackup"));
        // The frame target: option byte 0 (full limit, split seed 0), the response's first
        // whole messages.
        let mut at = 0;
        for (_, body) in frames(&stream) {
            if at + 5 + body.len() > 16 * 1024 {
                break;
            }
            at += 5 + body.len();
        }
        let mut fr = vec![0u8];
        fr.extend_from_slice(&stream[..at]);
        out.push((format!("seed-real-pg{major}-response-start"), fr, "frame"));
        // The recording target: the shortened response as a recording with the real metadata
        // (minus the manifest, which the shortened stream leaves out).
        let meta = RecordingMeta { manifest: false, ..f.meta.clone() };
        let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
        w.mark(0, BASE_BACKUP_MARK).unwrap();
        for (i, piece) in stream.chunks(4096).enumerate() {
            w.record(Direction::Server, i as u64 + 1, piece).unwrap();
        }
        out.push((format!("seed-real-pg{major}-short"), w.into_inner().unwrap(), "recording"));
        if major == 16 || major == 12 {
            for (k, tar) in tars.iter().enumerate() {
                let mut t = vec![5u8];
                t.extend_from_slice(tar);
                out.push((format!("seed-real-pg{major}-archive{k}"), t, "tar"));
            }
        }
    }
    out
}

/// The committed seeds are what the fixtures give, decode as their names say, and stay small.
/// `PGPLAKAR_REGENERATE_SEEDS=1` rewrites them (after re-recording the fixtures).
#[test]
fn fuzz_seeds_from_fixtures_are_valid() {
    for (name, data, target) in seeds() {
        assert!(data.len() < MAX_SEED, "{name}: {} bytes", data.len());
        match target {
            "basebackup" => {
                pg_basebackup::fuzzing::decode(&data);
                let s = decode_pieces(pg_basebackup::fuzzing::options(data[0]), [&data[2..]]);
                assert_eq!(s.done, !name.contains("truncated"), "{name}: {:?}", s.error);
                if s.done {
                    assert_eq!(s.archives.len(), 2, "{name}");
                    assert!(s.archives.iter().all(|a| !a.entries.is_empty()), "{name}");
                }
            }
            "frame" => {
                pg_wire::fuzzing::frame(&data);
                assert!(data.len() > 1000, "{name}");
            }
            "recording" => {
                pg_recording::fuzzing::recording(&data);
                let s = replay(&data[..], Chunking::AsRecorded).unwrap();
                assert!(s.done, "{name}: {:?}", s.error);
            }
            _ => {
                let mut r = pg_tar::TarReader::new();
                r.feed(Bytes::copy_from_slice(&data[1..]));
                let mut entries = 0;
                while let Some(ev) = r.next_event().unwrap_or_else(|e| panic!("{name}: {e}")) {
                    if let pg_tar::TarEvent::EntryStart(_) = ev {
                        entries += 1;
                    }
                }
                r.finish().unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(entries > 0, "{name}");
            }
        }
        let committed = repo_root().join("fuzz/regressions").join(target).join(&name);
        if std::env::var_os("PGPLAKAR_REGENERATE_SEEDS").is_some() {
            std::fs::write(&committed, &data).unwrap();
        }
        let c = std::fs::read(&committed).unwrap_or_else(|e| {
            panic!("{}: {e} (after re-recording, run with PGPLAKAR_REGENERATE_SEEDS=1)", committed.display())
        });
        assert_eq!(c, data, "{} differs from what the fixtures give", committed.display());
    }
}
