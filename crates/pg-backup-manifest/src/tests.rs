//! Unit tests. The manifests, file listings and sample files under `tests/data/` come from
//! real PostgreSQL 15 and 17 servers (`tests/data/regenerate.sh`).

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::fuzzing::seal;
use crate::*;

/// Every committed backup: (name, version, algorithm).
const BACKUPS: [(&str, u32, ChecksumAlgorithm); 5] = [
    ("pg15-crc32c", 1, ChecksumAlgorithm::Crc32c),
    ("pg15-sha256", 1, ChecksumAlgorithm::Sha256),
    ("pg15-none", 1, ChecksumAlgorithm::None),
    ("pg15-sha512-encoded", 1, ChecksumAlgorithm::Sha512),
    ("pg17-sha224", 2, ChecksumAlgorithm::Sha224),
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn manifest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(format!("{name}.manifest"))).unwrap()
}

/// The backup's regular files on disk (except backup_manifest): (path, size).
fn listing(name: &str) -> Vec<(Vec<u8>, u64)> {
    let text = std::fs::read_to_string(data_dir().join(format!("{name}.files"))).unwrap();
    text.lines()
        .map(|l| {
            let (p, s) = l.split_once(' ').unwrap();
            (hex::decode(p).unwrap(), s.parse().unwrap())
        })
        .collect()
}

/// The body of a manifest (everything before the checksum line).
fn body(bytes: &[u8]) -> Vec<u8> {
    let end = bytes[..bytes.len() - 1].iter().rposition(|&b| b == b'\n').unwrap();
    bytes[..=end].to_vec()
}

/// Replaces the first occurrence of `from` in the body, then re-seals the manifest.
fn edit(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(body(bytes)).unwrap();
    assert!(text.contains(from), "{from:?} not in the manifest");
    seal(text.replacen(from, to, 1).as_bytes())
}

fn invalid(result: Result<Manifest, ManifestError>) -> (usize, Problem) {
    match result {
        Err(ManifestError::Invalid { line, problem, .. }) => (line, problem),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

fn file_problem(result: Result<Manifest, ManifestError>) -> (usize, String, FileProblem) {
    match invalid(result) {
        (_, Problem::File { index, path, problem }) => (index, path, problem),
        (_, other) => panic!("expected a file problem, got {other:?}"),
    }
}

/// A small sealed manifest.
fn small(version: u32, files: &str, ranges: &str) -> Vec<u8> {
    let sysid = if version == 2 { "\"System-Identifier\": 7311111111111111111,\n" } else { "" };
    seal(
        format!(
            "{{ \"PostgreSQL-Backup-Manifest-Version\": {version},\n{sysid}\"Files\": [{files}\n],\n\"WAL-Ranges\": [\n{ranges}\n],\n"
        )
        .as_bytes(),
    )
}

const ONE_RANGE: &str = r#"{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }"#;

// ===== checksums =====

#[test]
fn crc32c_is_hex_of_little_endian_bytes() {
    // Check value of CRC-32C, then PostgreSQL's byte order.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    let mut h = FileHasher::new(ChecksumAlgorithm::Crc32c);
    h.update(b"123456789");
    assert_eq!(h.finish(), (9, "839206e3".to_owned()));
    let mut h = FileHasher::new(ChecksumAlgorithm::Crc32c);
    h.update(b"15\n");
    assert_eq!(h.finish().1, "8a744722");
}

#[test]
fn sha2_known_answers() {
    let cases = [
        (ChecksumAlgorithm::Sha224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"),
        (ChecksumAlgorithm::Sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            ChecksumAlgorithm::Sha384,
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
        ),
        (
            ChecksumAlgorithm::Sha512,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
    ];
    for (algorithm, expected) in cases {
        let mut h = FileHasher::new(algorithm);
        h.update(b"a");
        h.update(b"bc");
        let digest = h.finish_digest();
        assert_eq!(digest.size, 3);
        assert_eq!(digest.checksum.to_hex(), expected, "{algorithm}");
        assert_eq!(digest.checksum.as_bytes().len(), algorithm.len());
    }
    let mut none = FileHasher::new(ChecksumAlgorithm::None);
    none.update(b"abc");
    assert_eq!(none.finish(), (3, String::new()));
}

#[test]
fn algorithm_names_round_trip_case_insensitively() {
    for a in ChecksumAlgorithm::ALL {
        assert_eq!(ChecksumAlgorithm::from_name(a.name()), Some(a));
        assert_eq!(ChecksumAlgorithm::from_name(&a.name().to_lowercase()), Some(a));
        assert_eq!(ChecksumAlgorithm::from_len(a.len()), Some(a));
    }
    assert_eq!(ChecksumAlgorithm::from_name("MD5"), None);
    assert_eq!(ChecksumAlgorithm::from_len(16), None);
}

#[test]
fn checksum_hex_is_checked() {
    assert_eq!(
        Checksum::from_hex(ChecksumAlgorithm::Crc32c, "8A744722").unwrap().to_hex(),
        "8a744722",
        "upper case is accepted, stored as bytes"
    );
    assert!(matches!(
        Checksum::from_hex(ChecksumAlgorithm::Crc32c, "8a7447"),
        Err(ChecksumHexError::Length { digits: 6, expected: 8, .. })
    ));
    assert!(matches!(
        Checksum::from_hex(ChecksumAlgorithm::Crc32c, "8a74472"),
        Err(ChecksumHexError::NotHex(_))
    ));
    assert!(matches!(
        Checksum::from_hex(ChecksumAlgorithm::Crc32c, "8a74472g"),
        Err(ChecksumHexError::NotHex(_))
    ));
    assert!(matches!(Checksum::from_hex_any("abcdef"), Err(ChecksumHexError::UnknownLength(6))));
    assert_eq!(Checksum::from_hex_any("").unwrap(), Checksum::none());
    assert_eq!(Checksum::from_hex_any(&"0".repeat(96)).unwrap().algorithm(), ChecksumAlgorithm::Sha384);
}

proptest! {
    #[test]
    fn file_hasher_is_split_invariant(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        algo in 0usize..6,
    ) {
        let algorithm = ChecksumAlgorithm::ALL[algo];
        let mut whole = FileHasher::new(algorithm);
        whole.update(&data);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = FileHasher::new(algorithm);
        let mut at = 0;
        for p in points {
            pieces.update(&data[at..p]);
            at = p;
        }
        pieces.update(&data[at..]);
        prop_assert_eq!(pieces.finish_digest(), whole.finish_digest());
    }
}

// ===== LSNs and paths =====

#[test]
fn lsn_formats() {
    assert_eq!("0/3000028".parse::<Lsn>().ok(), Some(Lsn(0x300_0028)));
    assert_eq!("0/03000028".parse::<Lsn>().ok(), Some(Lsn(0x300_0028)), "PostgreSQL 18 pads the low half");
    assert_eq!("1A/ff".parse::<Lsn>().ok(), Some(Lsn((0x1a << 32) | 0xff)));
    assert_eq!(Lsn(0x1_0000_00ff).to_string(), "1/FF");
    for bad in ["", "0", "0/", "/0", "123456789/0", "0/123456789", "g/0", "0/1/2", " 0/1", "-1/0"] {
        assert_eq!(bad.parse::<Lsn>().ok(), None, "{bad:?}");
    }
}

#[test]
fn unsafe_paths_are_rejected() {
    assert_eq!(check_relative_path(b"base/1/1259", 1024), Ok(()));
    assert_eq!(check_relative_path(b"", 1024), Err(PathProblem::Empty));
    assert_eq!(check_relative_path(b"/etc/passwd", 1024), Err(PathProblem::Absolute));
    for bad in [&b"../x"[..], b"a/../b", b"a//b", b"./a", b"a/", b"a/."] {
        assert_eq!(check_relative_path(bad, 1024), Err(PathProblem::BadComponent), "{bad:?}");
    }
    assert_eq!(check_relative_path(b"a\0b", 1024), Err(PathProblem::Nul));
    assert_eq!(check_relative_path(b"abcd", 3), Err(PathProblem::TooLong { len: 4, limit: 3 }));
    assert_eq!(display_path(b"odd_\xff\"\n.txt"), "odd_\\xff\\\"\\n.txt");
    assert!(is_wal_segment_path(b"pg_wal/000000010000000000000002"));
    assert!(is_wal_segment_path(b"pg_wal/000000010000000000000002.partial"));
    assert!(!is_wal_segment_path(b"pg_wal/archive_status/000000010000000000000002.done"));
    assert!(!is_wal_segment_path(b"pg_wal/00000002.history"));
}

// ===== parsing real manifests =====

#[test]
fn real_manifests_parse() {
    for (name, version, algorithm) in BACKUPS {
        let bytes = manifest_bytes(name);
        let m = Manifest::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.version(), version, "{name}");
        assert_eq!(m.system_identifier().is_some(), version == 2, "{name}");
        let entries = bytes.windows(8).filter(|w| w == b"\"Size\": ").count();
        assert_eq!(m.files().len(), entries, "{name}");
        assert!(m.files().len() > 900, "{name}: a fresh cluster has ~970 files");
        assert_eq!(m.checksum_algorithm(), Some(algorithm), "{name}");
        assert_eq!(m.wal_ranges().len(), 1, "{name}");
        assert_eq!(m.wal_ranges()[0].timeline, 1);
        assert!(m.wal_ranges()[0].start < m.wal_ranges()[0].end);
        assert!(m.file(b"global/pg_control").is_some());
        assert!(m.file(b"backup_label").is_some());
        assert!(m.file(b"no/such/file").is_none());
        for f in m.files() {
            assert_eq!(m.file(f.path()).unwrap(), f);
            assert!(f.last_modified().unwrap().ends_with(" GMT"), "{name}");
        }
        assert_eq!(m.manifest_checksum(), &crate::checksum::sha256(&body(&bytes)));
        // The tablespace files come first, under pg_tblspc/<oid>/PG_<major>_<catversion>/.
        assert!(m.files()[0].path().starts_with(b"pg_tblspc/"), "{name}");
    }
}

#[test]
fn real_v2_system_identifier_is_exact() {
    let bytes = manifest_bytes("pg17-sha224");
    let text = String::from_utf8(bytes.clone()).unwrap();
    let line = text.lines().nth(1).unwrap();
    let digits = line.trim_start_matches("\"System-Identifier\": ").trim_end_matches(',');
    let m = Manifest::parse(&bytes).unwrap();
    assert_eq!(m.system_identifier(), Some(digits.parse::<u64>().unwrap()));
    // The control file of the same backup starts with that identifier.
    let control = std::fs::read(data_dir().join("pg17-sha224/global/pg_control")).unwrap();
    assert_eq!(m.system_identifier(), Some(u64::from_le_bytes(control[..8].try_into().unwrap())));
}

#[test]
fn real_encoded_paths_decode() {
    // A file named odd_\xff.txt (not UTF-8) was put in the data directory.
    let m = Manifest::parse(&manifest_bytes("pg15-crc32c")).unwrap();
    let odd = m.file(b"odd_\xff.txt").expect("the non-UTF-8 file is listed");
    assert_eq!(odd.size(), 4);
    assert_eq!(odd.path_str(), None);
    assert_eq!(odd.display_path(), "odd_\\xff.txt");
    let mut h = FileHasher::new(ChecksumAlgorithm::Crc32c);
    h.update(b"odd\n");
    assert_eq!(h.finish().1, odd.checksum().to_hex());

    // MANIFEST 'force-encode': every path is Encoded-Path; same paths as a plain manifest.
    let forced = Manifest::parse(&manifest_bytes("pg15-sha512-encoded")).unwrap();
    let plain = Manifest::parse(&manifest_bytes("pg15-none")).unwrap();
    let mut a: Vec<&[u8]> = forced.files().iter().map(|f| f.path()).collect();
    let mut b: Vec<&[u8]> = plain.files().iter().map(|f| f.path()).collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
}

#[test]
fn real_sample_files_match_their_manifest_entries() {
    for (name, _, algorithm) in BACKUPS {
        let m = Manifest::parse(&manifest_bytes(name)).unwrap();
        for file in ["backup_label", "PG_VERSION", "global/pg_control"] {
            let content = std::fs::read(data_dir().join(name).join(file)).unwrap();
            let entry = m.file(file.as_bytes()).unwrap();
            let mut h = FileHasher::new(algorithm);
            for piece in content.chunks(1000) {
                h.update(piece);
            }
            let (size, hex) = h.finish();
            assert_eq!(size, entry.size(), "{name}/{file}");
            assert_eq!(hex, entry.checksum().to_hex(), "{name}/{file}");
        }
    }
}

#[test]
fn real_listings_match_manifests() {
    // What pg_basebackup wrote to disk is the manifest's files, plus WAL segments.
    for (name, _, _) in BACKUPS {
        let m = Manifest::parse(&manifest_bytes(name)).unwrap();
        let mut v = Verifier::new().require_checksums(false);
        for (path, size) in listing(name) {
            v.file_received(&path, size, "").unwrap();
        }
        let report = v.finish_parsed(&m, None, None).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(report.files_verified as usize, m.files().len(), "{name}");
        assert_eq!(report.checksums_verified, 0);
        assert!(report.ignored.iter().all(|p| p.starts_with("pg_wal/")), "{name}: {:?}", report.ignored);
    }
}

// ===== rejecting bad manifests =====

#[test]
fn tampered_manifests_fail_the_checksum() {
    let bytes = manifest_bytes("pg15-sha256");
    let mut flipped = bytes.clone();
    let at = flipped.windows(12).position(|w| w == b"backup_label").unwrap();
    flipped[at] = b'B';
    match Manifest::parse(&flipped) {
        Err(ManifestError::ChecksumMismatch { expected, actual }) => {
            assert_ne!(expected, actual);
            let last_line = String::from_utf8(bytes[body(&bytes).len()..].to_vec()).unwrap();
            assert_eq!(
                last_line,
                format!("\"Manifest-Checksum\": \"{expected}\"}}\n"),
                "expected = the manifest's"
            );
        }
        other => panic!("{other:?}"),
    }
    let mut wrong = bytes.clone();
    let n = wrong.len();
    wrong[n - 4] = if wrong[n - 4] == b'0' { b'1' } else { b'0' };
    assert!(matches!(Manifest::parse(&wrong), Err(ManifestError::ChecksumMismatch { .. })));

    assert!(matches!(Manifest::parse(&bytes[..n - 1]), Err(ManifestError::Layout(_))), "no final newline");
    assert!(matches!(Manifest::parse(b"{}\n"), Err(ManifestError::Layout(_))));
    assert!(matches!(Manifest::parse(b""), Err(ManifestError::Layout(_))));
    // A checksum line that is not the last line.
    let mut moved = body(&bytes);
    moved.extend_from_slice(&bytes[moved.len()..]);
    moved.extend_from_slice(b"\n");
    assert!(matches!(Manifest::parse(&moved), Err(ManifestError::Layout(_))));
}

#[test]
fn versions_other_than_1_and_2_are_rejected() {
    let bytes = manifest_bytes("pg15-crc32c");
    let v3 = edit(
        &bytes,
        "\"PostgreSQL-Backup-Manifest-Version\": 1",
        "\"PostgreSQL-Backup-Manifest-Version\": 3",
    );
    assert_eq!(invalid(Manifest::parse(&v3)), (1, Problem::UnsupportedVersion(3)));
    let text = edit(
        &bytes,
        "\"PostgreSQL-Backup-Manifest-Version\": 1",
        "\"PostgreSQL-Backup-Manifest-Version\": \"1\"",
    );
    assert!(matches!(invalid(Manifest::parse(&text)).1, Problem::Json(_)));
    let order = edit(&bytes, "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [", "{ \"Files\": [");
    assert_eq!(invalid(Manifest::parse(&order)).1, Problem::VersionNotFirst);
}

#[test]
fn v2_manifest_constructed_from_v1() {
    let bytes = manifest_bytes("pg15-crc32c");
    let v2 = edit(
        &bytes,
        "\"PostgreSQL-Backup-Manifest-Version\": 1,\n",
        "\"PostgreSQL-Backup-Manifest-Version\": 2,\n\"System-Identifier\": 18446744073709551615,\n",
    );
    let m = Manifest::parse(&v2).unwrap();
    assert_eq!((m.version(), m.system_identifier()), (2, Some(u64::MAX)), "parsed as u64, never through f64");

    let missing = edit(
        &bytes,
        "\"PostgreSQL-Backup-Manifest-Version\": 1",
        "\"PostgreSQL-Backup-Manifest-Version\": 2",
    );
    assert_eq!(invalid(Manifest::parse(&missing)).1, Problem::MissingField("System-Identifier"));
    let in_v1 = edit(
        &bytes,
        "\"PostgreSQL-Backup-Manifest-Version\": 1,\n",
        "\"PostgreSQL-Backup-Manifest-Version\": 1,\n\"System-Identifier\": 1,\n",
    );
    assert_eq!(invalid(Manifest::parse(&in_v1)).1, Problem::SystemIdentifierInV1);
    let too_big = edit(&v2, "18446744073709551615", "18446744073709551616");
    assert!(matches!(invalid(Manifest::parse(&too_big)).1, Problem::Json(_)));
}

#[test]
fn top_level_structure_is_strict() {
    let bytes = manifest_bytes("pg15-none");
    let unknown = edit(&bytes, "\"WAL-Ranges\": [", "\"Extra\": 1,\n\"WAL-Ranges\": [");
    assert_eq!(invalid(Manifest::parse(&unknown)).1, Problem::UnknownField("Extra".into()));
    let no_ranges = small(1, "", "").replace_body("\"WAL-Ranges\": [\n\n],\n", "");
    assert_eq!(invalid(Manifest::parse(&no_ranges)).1, Problem::MissingField("WAL-Ranges"));
    let twice = edit(&bytes, "\"WAL-Ranges\": [", "\"Files\": [],\n\"WAL-Ranges\": [");
    assert_eq!(invalid(Manifest::parse(&twice)).1, Problem::DuplicateField("Files"));
    let early = edit(&bytes, "\"WAL-Ranges\": [", "\"Manifest-Checksum\": \"x\",\n\"WAL-Ranges\": [");
    assert_eq!(invalid(Manifest::parse(&early)).1, Problem::FieldAfterChecksum);
    assert!(matches!(invalid(Manifest::parse(&seal(b"[1,\n"))).1, Problem::Json(_)));
    let one_line = seal(b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [], \"WAL-Ranges\": [],\n");
    assert_eq!(Manifest::parse(&one_line).unwrap().files().len(), 0);
}

trait ReplaceBody {
    fn replace_body(&self, from: &str, to: &str) -> Vec<u8>;
}

impl ReplaceBody for Vec<u8> {
    fn replace_body(&self, from: &str, to: &str) -> Vec<u8> {
        edit(self, from, to)
    }
}

#[test]
fn duplicate_paths_are_rejected_with_both_indices() {
    let bytes = manifest_bytes("pg15-crc32c");
    let m = Manifest::parse(&bytes).unwrap();
    let second = m.files()[1].display_path();
    let third = m.files()[2].display_path();
    let dup = edit(&bytes, &format!("\"Path\": \"{third}\""), &format!("\"Path\": \"{second}\""));
    let err = Manifest::parse(&dup).unwrap_err();
    assert_eq!(err, ManifestError::DuplicatePath { path: second.clone(), first: 1, second: 2 });
    assert!(err.to_string().contains(&second) && err.to_string().contains("Files[1] and Files[2]"));
    // The same name once as Path and once as Encoded-Path is a duplicate too.
    let encoded = edit(
        &bytes,
        &format!("\"Path\": \"{third}\""),
        &format!("\"Encoded-Path\": \"{}\"", hex::encode(second.as_bytes())),
    );
    assert!(matches!(Manifest::parse(&encoded), Err(ManifestError::DuplicatePath { .. })));
}

#[test]
fn bad_file_entries_say_which_entry_and_what() {
    let bytes = manifest_bytes("pg15-crc32c");
    let label = "{ \"Path\": \"backup_label\", \"Size\": 225,";
    let index =
        Manifest::parse(&bytes).unwrap().files().iter().position(|f| f.path() == b"backup_label").unwrap();
    let case = |to: &str| file_problem(Manifest::parse(&edit(&bytes, label, to)));

    let (i, path, p) = case("{ \"Path\": \"backup_label\", \"Encoded-Path\": \"6162\", \"Size\": 225,");
    assert_eq!((i, path.as_str(), p), (index, "\"backup_label\"", FileProblem::BothPaths));
    assert_eq!(case("{ \"Size\": 225,").2, FileProblem::MissingPath);
    assert_eq!(case("{ \"Encoded-Path\": \"6162636\", \"Size\": 225,").2, FileProblem::BadEncodedPath);
    assert_eq!(case("{ \"Encoded-Path\": \"zz\", \"Size\": 225,").2, FileProblem::BadEncodedPath);
    assert_eq!(
        case("{ \"Path\": \"backup_label\", \"Mode\": 1, \"Size\": 225,").2,
        FileProblem::UnknownField("Mode".into())
    );
    assert_eq!(
        case("{ \"Path\": \"backup_label\", \"Size\": 225, \"Size\": 225,").2,
        FileProblem::DuplicateField("Size")
    );
    assert_eq!(case("{ \"Path\": \"backup_label\",").2, FileProblem::MissingSize);
    assert!(matches!(case("{ \"Path\": \"backup_label\", \"Size\": -1,").2, FileProblem::Json(_)));
    assert!(matches!(case("{ \"Path\": \"backup_label\", \"Size\": 1.5,").2, FileProblem::Json(_)));
    assert!(matches!(case("{ \"Path\": \"backup_label\", \"Size\": \"225\",").2, FileProblem::Json(_)));
    assert_eq!(
        case("{ \"Path\": \"backup_label\", \"Size\": 18446744073709551615,").2,
        FileProblem::SizeTooLarge { size: u64::MAX, limit: 1 << 44 }
    );
    assert_eq!(
        case("{ \"Path\": \"../backup_label\", \"Size\": 225,").2,
        FileProblem::Path(PathProblem::BadComponent)
    );
    assert_eq!(
        case("{ \"Path\": \"/backup_label\", \"Size\": 225,").2,
        FileProblem::Path(PathProblem::Absolute)
    );
    let long = "a/".repeat(600) + "b";
    assert!(matches!(
        case(&format!("{{ \"Path\": \"{long}\", \"Size\": 225,")).2,
        FileProblem::Path(PathProblem::TooLong { len: 1201, limit: 1024 })
    ));

    // Checksums: the entry is `..., "Checksum-Algorithm": "CRC32C", "Checksum": "<8 hex>" }`.
    let m = Manifest::parse(&bytes).unwrap();
    let crc = m.file(b"backup_label").unwrap().checksum().to_hex();
    let tail = format!("\"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{crc}\" }}");
    let with_tail = |to: &str| {
        let text = String::from_utf8(body(&bytes)).unwrap();
        let at = text.find(label).unwrap();
        let end = at + text[at..].find(&tail).unwrap() + tail.len();
        let mut out = text.clone();
        out.replace_range(end - tail.len()..end, to);
        file_problem(Manifest::parse(&seal(out.as_bytes())))
    };
    assert_eq!(
        with_tail(&format!("\"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{}\" }}", &crc[..6])).2,
        FileProblem::Checksum(ChecksumHexError::Length {
            algorithm: ChecksumAlgorithm::Crc32c,
            digits: 6,
            expected: 8
        })
    );
    assert!(matches!(
        with_tail("\"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"0000000x\" }").2,
        FileProblem::Checksum(ChecksumHexError::NotHex(_))
    ));
    assert!(matches!(
        with_tail(&format!("\"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"{crc}\" }}")).2,
        FileProblem::Checksum(ChecksumHexError::Length { expected: 64, .. })
    ));
    assert_eq!(
        with_tail(&format!("\"Checksum-Algorithm\": \"MD5\", \"Checksum\": \"{crc}\" }}")).2,
        FileProblem::UnknownAlgorithm("MD5".into())
    );
    assert_eq!(with_tail(&format!("\"Checksum\": \"{crc}\" }}")).2, FileProblem::ChecksumWithoutAlgorithm);
    assert_eq!(
        with_tail("\"Checksum-Algorithm\": \"CRC32C\" }").2,
        FileProblem::AlgorithmWithoutChecksum(ChecksumAlgorithm::Crc32c)
    );
    // Accepted like PostgreSQL does: lower-case names, upper-case hex, explicit NONE.
    let lower = edit(
        &bytes,
        &tail,
        &format!("\"Checksum-Algorithm\": \"crc32c\", \"Checksum\": \"{}\" }}", crc.to_uppercase()),
    );
    assert_eq!(Manifest::parse(&lower).unwrap().file(b"backup_label").unwrap().checksum().to_hex(), crc);
    let none = edit(&bytes, &tail, "\"Checksum-Algorithm\": \"NONE\" }");
    assert_eq!(Manifest::parse(&none).unwrap().file(b"backup_label").unwrap().checksum(), &Checksum::none());
}

#[test]
fn error_messages_name_the_place() {
    let bytes = manifest_bytes("pg15-crc32c");
    let bad = edit(
        &bytes,
        "{ \"Path\": \"backup_label\", \"Size\": 225,",
        "{ \"Path\": \"backup_label\", \"Size\": -225,",
    );
    let err = Manifest::parse(&bad).unwrap_err();
    let text = err.to_string();
    let line = String::from_utf8(bad.clone()).unwrap().lines().position(|l| l.contains("-225")).unwrap() + 1;
    assert!(text.starts_with(&format!("backup_manifest line {line} column ")), "{text}");
    assert!(text.contains("Files[") && text.contains("(\"backup_label\")"), "{text}");
    assert!(!text.contains(" at line "), "one position only: {text}");
}

#[test]
fn wal_ranges_are_strict() {
    let ok = small(1, "", ONE_RANGE);
    assert_eq!(
        Manifest::parse(&ok).unwrap().wal_ranges(),
        &[WalRange { timeline: 1, start: Lsn(0x200_0028), end: Lsn(0x200_0100) }]
    );
    let pg18 = small(1, "", r#"{ "Timeline": 1, "Start-LSN": "0/02000028", "End-LSN": "0/02000100" }"#);
    assert_eq!(Manifest::parse(&pg18).unwrap().wal_ranges()[0].start, Lsn(0x200_0028));
    let cases: [(&str, WalRangeProblem); 6] = [
        (r#"{ "Timeline": 0, "Start-LSN": "0/1", "End-LSN": "0/2" }"#, WalRangeProblem::TimelineZero),
        (r#"{ "Start-LSN": "0/1", "End-LSN": "0/2" }"#, WalRangeProblem::Missing("Timeline")),
        (r#"{ "Timeline": 1, "End-LSN": "0/2" }"#, WalRangeProblem::Missing("Start-LSN")),
        (
            r#"{ "Timeline": 1, "Start-LSN": "0/1", "End-LSN": "0/2", "End-LSN": "0/2" }"#,
            WalRangeProblem::DuplicateField("End-LSN"),
        ),
        (
            r#"{ "Timeline": 1, "Start-LSN": "0/1", "End-LSN": "0/2", "X": 1 }"#,
            WalRangeProblem::UnknownField("X".into()),
        ),
        (
            r#"{ "Timeline": 1, "Start-LSN": "0x1", "End-LSN": "0/2" }"#,
            WalRangeProblem::BadLsn { field: "Start-LSN", value: "0x1".into() },
        ),
    ];
    for (range, expected) in cases {
        match invalid(Manifest::parse(&small(1, "", range))).1 {
            Problem::WalRange { index: 0, problem } => assert_eq!(problem, expected, "{range}"),
            other => panic!("{range}: {other:?}"),
        }
    }
    let big_tli = small(1, "", r#"{ "Timeline": 4294967296, "Start-LSN": "0/1", "End-LSN": "0/2" }"#);
    assert!(matches!(
        invalid(Manifest::parse(&big_tli)).1,
        Problem::WalRange { problem: WalRangeProblem::Json(_), .. }
    ));
}

#[test]
fn limits_are_enforced() {
    let bytes = manifest_bytes("pg15-crc32c");
    let tight = Limits { max_manifest_bytes: 1000, ..Limits::default() };
    assert!(matches!(
        Manifest::parse_with_limits(&bytes, &tight),
        Err(ManifestError::TooLarge { limit: 1000, .. })
    ));
    let few = Limits { max_files: 10, ..Limits::default() };
    assert_eq!(invalid(Manifest::parse_with_limits(&bytes, &few)).1, Problem::TooManyFiles(10));
    let short_paths = Limits { max_path_len: 20, ..Limits::default() };
    assert!(matches!(
        file_problem(Manifest::parse_with_limits(&bytes, &short_paths)).2,
        FileProblem::Path(PathProblem::TooLong { limit: 20, .. })
    ));

    let mut buf =
        ManifestBuffer::with_limits(Limits { max_manifest_bytes: bytes.len(), ..Limits::default() });
    for piece in bytes.chunks(777) {
        buf.push(piece).unwrap();
    }
    assert_eq!(buf.parse().unwrap().files().len(), Manifest::parse(&bytes).unwrap().files().len());
    assert!(matches!(buf.push(b"x"), Err(ManifestError::TooLarge { .. })));
    assert_eq!(buf.len(), bytes.len(), "a refused piece is not stored");
}

// ===== verification of a streamed backup =====

/// A verifier fed with the sample files hashed for real and every other file as the manifest
/// lists it (the backup's content is not committed), plus a WAL segment and backup_manifest.
fn fed(name: &str, algorithm: ChecksumAlgorithm) -> (Manifest, Verifier) {
    let m = Manifest::parse(&manifest_bytes(name)).unwrap();
    let mut v = Verifier::new();
    for f in m.files() {
        let sample = data_dir().join(name).join(std::str::from_utf8(f.path()).unwrap_or("-"));
        if ["backup_label", "PG_VERSION", "global/pg_control"].contains(&f.path_str().unwrap_or("")) {
            let mut h = FileHasher::new(algorithm);
            h.update(&std::fs::read(sample).unwrap());
            let (size, hex) = h.finish();
            v.file_received(f.path(), size, &hex).unwrap();
        } else {
            v.file_received_checksum(f.path(), f.size(), f.checksum().clone()).unwrap();
        }
    }
    v.file_received("pg_wal/000000010000000000000002", 16 << 20, &"0".repeat(algorithm.len() * 2)).unwrap();
    v.file_received("backup_manifest", 10, &"0".repeat(algorithm.len() * 2)).unwrap();
    (m, v)
}

/// A backup's `(LSN, timeline)` start or end, as `Verifier::finish` takes it.
type Point = Option<(u64, u32)>;

fn range_of(m: &Manifest) -> (Point, Point) {
    let r = m.wal_ranges()[0];
    (Some((r.start.0, r.timeline)), Some((r.end.0, r.timeline)))
}

#[test]
fn streamed_backup_verifies() {
    for (name, version, algorithm) in BACKUPS {
        let (m, v) = fed(name, algorithm);
        let (start, end) = range_of(&m);
        let report = v.finish(&manifest_bytes(name), start, end).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(report.manifest_version, version);
        assert_eq!(report.files_verified as usize, m.files().len());
        let with_checksum = if algorithm == ChecksumAlgorithm::None { 0 } else { m.files().len() };
        assert_eq!(report.checksums_verified as usize, with_checksum);
        assert_eq!(report.bytes_verified, m.total_size());
        assert_eq!(report.ignored, ["backup_manifest", "pg_wal/000000010000000000000002"]);
    }
}

#[test]
fn each_mismatch_kind_is_reported() {
    let name = "pg15-crc32c";
    let bytes = manifest_bytes(name);
    let m = Manifest::parse(&bytes).unwrap();
    let label = m.file(b"backup_label").unwrap().clone();
    let control = m.file(b"global/pg_control").unwrap().clone();

    // Size, checksum, missing, unexpected, duplicate, all in one run.
    let mut v = Verifier::new();
    for f in m.files() {
        match f.path() {
            b"backup_label" => {
                v.file_received(f.path(), f.size() + 1, &f.checksum().to_hex()).unwrap();
            }
            b"global/pg_control" => {
                let mut bytes = f.checksum().as_bytes().to_vec();
                bytes[0] ^= 1;
                v.file_received(f.path(), f.size(), &hex::encode(bytes)).unwrap();
            }
            b"PG_VERSION" => {}
            _ => v.file_received_checksum(f.path(), f.size(), f.checksum().clone()).unwrap(),
        }
    }
    v.file_received("base/1/99999", 8192, "00000000").unwrap();
    v.file_received(
        "pg_hba.conf",
        m.file(b"pg_hba.conf").unwrap().size(),
        &m.file(b"pg_hba.conf").unwrap().checksum().to_hex(),
    )
    .unwrap();
    let mismatches = v.finish(&bytes, None, None).unwrap_err();
    let mut flipped = control.checksum().as_bytes().to_vec();
    flipped[0] ^= 1;
    let expected = vec![
        Mismatch::Size { path: "backup_label".into(), manifest: label.size(), received: label.size() + 1 },
        Mismatch::Checksum {
            path: "global/pg_control".into(),
            algorithm: ChecksumAlgorithm::Crc32c,
            manifest: control.checksum().to_hex(),
            received: hex::encode(flipped),
        },
        Mismatch::Missing { path: "PG_VERSION".into() },
        Mismatch::Unexpected { path: "base/1/99999".into() },
        Mismatch::Duplicate { path: "pg_hba.conf".into(), count: 2 },
    ];
    for e in &expected {
        assert!(mismatches.contains(e), "{e} not in {mismatches:?}");
    }
    assert_eq!(mismatches.len(), expected.len(), "{mismatches:?}");
    let text = mismatches.iter().find(|m| matches!(m, Mismatch::Size { .. })).unwrap().to_string();
    assert!(text.contains("backup_label") && text.contains("size"), "{text}");
}

#[test]
fn algorithm_and_identity_mismatches() {
    let (m, _) = fed("pg15-sha256", ChecksumAlgorithm::Sha256);
    // Hashed with CRC-32C although the manifest has SHA-256.
    let mut v = Verifier::new();
    for f in m.files() {
        v.file_received(f.path(), f.size(), "00000000").unwrap();
    }
    let mismatches = v.finish_parsed(&m, None, None).unwrap_err();
    assert_eq!(mismatches.len(), m.files().len());
    assert!(matches!(
        &mismatches[0],
        Mismatch::Algorithm { manifest: ChecksumAlgorithm::Sha256, received: ChecksumAlgorithm::Crc32c, .. }
    ));
    // Not hashed at all: an error unless checksums are not required.
    let mut strict = Verifier::new();
    let mut lax = Verifier::new().require_checksums(false);
    for f in m.files() {
        strict.file_received(f.path(), f.size(), "").unwrap();
        lax.file_received(f.path(), f.size(), "").unwrap();
    }
    assert!(strict.finish_parsed(&m, None, None).is_err());
    assert_eq!(lax.finish_parsed(&m, None, None).unwrap().checksums_verified, 0);

    // Version 2: the System-Identifier must be the server's.
    let (m17, mut v) = fed("pg17-sha224", ChecksumAlgorithm::Sha224);
    let id = m17.system_identifier().unwrap();
    v.expect_system_identifier(id + 1);
    assert_eq!(
        v.finish_parsed(&m17, None, None).unwrap_err(),
        [Mismatch::SystemIdentifier { manifest: id, expected: id + 1 }]
    );
    let (_, mut v) = fed("pg17-sha224", ChecksumAlgorithm::Sha224);
    v.expect_system_identifier(id);
    assert!(v.finish_parsed(&m17, None, None).is_ok());
}

#[test]
fn received_files_are_checked_on_arrival() {
    let mut v = Verifier::new();
    assert!(matches!(v.file_received("../etc/passwd", 1, ""), Err(VerifyError::Path { .. })));
    assert!(matches!(v.file_received("base/1/1", 1, "123"), Err(VerifyError::Checksum { .. })));
    let mut few = Verifier::new().with_limits(Limits { max_files: 1, ..Limits::default() });
    few.file_received("a", 1, "").unwrap();
    few.file_received("a", 1, "").unwrap();
    assert_eq!(few.file_received("b", 1, ""), Err(VerifyError::TooManyFiles(1)));
    assert_eq!(few.files_received(), 1);
    // A broken manifest is reported as such.
    assert!(matches!(
        Verifier::new().finish(b"{}\n\n", None, None).unwrap_err()[..],
        [Mismatch::Manifest(_)]
    ));
}

#[test]
fn wal_ranges_must_match_the_backup() {
    let (m, v) = fed("pg15-crc32c", ChecksumAlgorithm::Crc32c);
    let r = m.wal_ranges()[0];
    let mismatches = v.finish_parsed(&m, Some((r.start.0 + 8, 1)), Some((r.end.0, 2))).unwrap_err();
    assert_eq!(mismatches.len(), 2, "{mismatches:?}");
    assert!(mismatches.iter().all(|m| matches!(m, Mismatch::WalRanges(_))));
    assert!(
        mismatches
            .iter()
            .any(|m| m.to_string().contains("backup ended at") && m.to_string().contains("timeline 2"))
    );

    // Several timelines (a standby promoted during the backup): newest first, chained.
    let r = |timeline, start, end| WalRange { timeline, start: Lsn(start), end: Lsn(end) };
    let chain = [r(3, 0x500, 0x900), r(2, 0x300, 0x500), r(1, 0x100, 0x300)];
    assert!(check_wal_ranges(&chain, Some((0x100, 1)), Some((0x900, 3))).is_empty());
    assert_eq!(check_wal_ranges(&chain, Some((0x100, 2)), None).len(), 1);
    assert_eq!(check_wal_ranges(&[r(3, 0x500, 0x900), r(2, 0x300, 0x400)], None, None).len(), 1, "gap");
    assert_eq!(check_wal_ranges(&[r(1, 0x300, 0x500), r(2, 0x100, 0x300)], None, None).len(), 1, "order");
    assert_eq!(check_wal_ranges(&[r(1, 0x300, 0x100)], None, None).len(), 1, "backwards");
    assert_eq!(check_wal_ranges(&[], None, None).len(), 1, "none");
}

#[test]
fn ignore_lists_match_prefixes() {
    let mut list = IgnoreList::pg_verifybackup();
    assert!(list.contains(b"pg_wal/archive_status/x.done"));
    assert!(list.contains(b"backup_manifest"));
    assert!(!list.contains(b"pg_wal2"));
    list.add("log/");
    assert!(list.contains(b"log/postgresql.log"));
    assert!(!IgnoreList::streamed().contains(b"pg_wal/archive_status/x.done"));
    assert!(!IgnoreList::empty().contains(b"backup_manifest"));
}

// ===== verification of a directory =====

/// Writes the pg17 sample files to a directory with a manifest listing exactly them.
fn sample_dir() -> (tempfile::TempDir, Vec<u8>) {
    let name = "pg17-sha224";
    let real = Manifest::parse(&manifest_bytes(name)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut files = String::new();
    for (i, f) in ["backup_label", "PG_VERSION", "global/pg_control"].into_iter().enumerate() {
        let content = std::fs::read(data_dir().join(name).join(f)).unwrap();
        std::fs::create_dir_all(dir.path().join(f).parent().unwrap()).unwrap();
        std::fs::write(dir.path().join(f), &content).unwrap();
        let e = real.file(f.as_bytes()).unwrap();
        files.push_str(if i == 0 { "\n" } else { ",\n" });
        files.push_str(&format!(
            "{{ \"Path\": \"{f}\", \"Size\": {}, \"Last-Modified\": \"{}\", \"Checksum-Algorithm\": \"SHA224\", \"Checksum\": \"{}\" }}",
            e.size(),
            e.last_modified().unwrap(),
            e.checksum().to_hex()
        ));
    }
    let sysid = real.system_identifier().unwrap();
    let manifest = seal(
        format!(
            "{{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n\"System-Identifier\": {sysid},\n\"Files\": [{files}\n],\n\"WAL-Ranges\": [\n{ONE_RANGE}\n],\n"
        )
        .as_bytes(),
    );
    std::fs::write(dir.path().join("backup_manifest"), &manifest).unwrap();
    // Ignored like pg_verifybackup does.
    std::fs::create_dir_all(dir.path().join("pg_wal/archive_status")).unwrap();
    std::fs::write(dir.path().join("pg_wal/000000010000000000000002"), b"wal").unwrap();
    std::fs::write(dir.path().join("postgresql.auto.conf"), b"# edited after the backup\n").unwrap();
    (dir, manifest)
}

/// The sample directory's `pg_wal` holds no real WAL: its files are checked without it
/// (`pg_verifybackup -n`); `wal_is_parsed_by_default` checks that the WAL is refused.
fn files_only() -> DirOptions {
    DirOptions { parse_wal: false, ..DirOptions::default() }
}

#[test]
fn directory_verifies() {
    let (dir, manifest) = sample_dir();
    let report = verify_directory_with(dir.path(), &manifest, &files_only()).unwrap();
    assert_eq!((report.files_verified, report.checksums_verified), (3, 3));
    assert_eq!(report.manifest_version, 2);
}

#[test]
fn wal_is_parsed_by_default() {
    let (dir, manifest) = sample_dir();
    // A three-byte "segment".
    let mismatches = verify_directory(dir.path(), &manifest).unwrap_err();
    assert!(
        matches!(&mismatches[..], [Mismatch::Wal { detail, .. }] if detail.contains("000000010000000000000002")),
        "{mismatches:?}"
    );
    // No segment at all.
    std::fs::remove_file(dir.path().join("pg_wal/000000010000000000000002")).unwrap();
    let mismatches = verify_directory(dir.path(), &manifest).unwrap_err();
    assert!(
        matches!(&mismatches[..], [Mismatch::Wal { detail, .. }] if detail.contains("pg_wal: no WAL segment")),
        "{mismatches:?}"
    );
    // Elsewhere (`pg_verifybackup -w`): an empty directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let options = DirOptions { wal_dir: Some(elsewhere.path().to_path_buf()), ..DirOptions::default() };
    assert!(verify_directory_with(dir.path(), &manifest, &options).is_err());
}

#[test]
fn directory_mismatches() {
    let (dir, manifest) = sample_dir();
    let p = dir.path();
    let mut label = std::fs::read(p.join("backup_label")).unwrap();
    label.push(b'\n');
    std::fs::write(p.join("backup_label"), &label).unwrap();
    let mut control = std::fs::read(p.join("global/pg_control")).unwrap();
    control[100] ^= 0xff;
    std::fs::write(p.join("global/pg_control"), &control).unwrap();
    std::fs::remove_file(p.join("PG_VERSION")).unwrap();
    std::fs::write(p.join("stray"), b"x").unwrap();
    let mismatches = verify_directory_with(p, &manifest, &files_only()).unwrap_err();
    let kinds: Vec<&str> = mismatches
        .iter()
        .map(|m| match m {
            Mismatch::Size { path, .. } if path == "backup_label" => "size",
            Mismatch::Checksum { path, .. } if path == "global/pg_control" => "checksum",
            Mismatch::Missing { path } if path == "PG_VERSION" => "missing",
            Mismatch::Unexpected { path } if path == "stray" => "unexpected",
            other => panic!("unexpected mismatch {other}"),
        })
        .collect();
    assert_eq!(kinds.len(), 4, "{mismatches:?}");
    for k in ["size", "checksum", "missing", "unexpected"] {
        assert!(kinds.contains(&k), "{k} in {mismatches:?}");
    }
    // Sizes only: the checksum change goes unnoticed.
    let sizes_only = DirOptions { skip_checksums: true, ..files_only() };
    assert_eq!(verify_directory_with(p, &manifest, &sizes_only).unwrap_err().len(), 3);
}

#[test]
fn directory_control_file_identity() {
    let (dir, manifest) = sample_dir();
    let text = String::from_utf8(manifest).unwrap();
    let sysid = Manifest::parse(text.as_bytes()).unwrap().system_identifier().unwrap();
    let other = seal(body(text.replace(&sysid.to_string(), &(sysid - 1).to_string()).as_bytes()).as_slice());
    assert_eq!(
        verify_directory_with(dir.path(), &other, &files_only()).unwrap_err(),
        [Mismatch::SystemIdentifier { manifest: sysid - 1, expected: sysid }]
    );
    assert!(matches!(
        verify_directory(&dir.path().join("nope"), &other).unwrap_err()[..],
        [Mismatch::Io { .. }]
    ));
}

// ===== fuzz seeds =====

#[test]
fn fuzz_regressions_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/manifest");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        crate::fuzzing::parse(&data);
        seen += 1;
    }
    assert!(seen >= 3, "the committed seeds are replayed ({seen} found in {})", dir.display());
    // The real manifests through the same entry point, raw and re-sealed.
    for (name, _, _) in BACKUPS {
        let bytes = manifest_bytes(name);
        crate::fuzzing::parse(&[&[0u8][..], &bytes].concat());
        crate::fuzzing::parse(&[&[1u8][..], &body(&bytes)].concat());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Random byte edits of a small valid manifest (re-sealed, so they reach the JSON parser):
    /// never a panic, and whatever parses satisfies the parser's promises.
    #[test]
    fn mutated_manifests_are_rejected_or_sane(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let seed = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/manifest/seed-v2-timelines-encoded"),
        )
        .unwrap();
        let mut body = seed[1..].to_vec();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        if let Some(cut) = cut {
            body.truncate(cut.index(body.len() + 1));
        }
        crate::fuzzing::parse(&[&[1u8][..], &body].concat());
        if let Ok(m) = Manifest::parse(&seal(&body)) {
            prop_assert!(m.version() == 1 || m.version() == 2);
            prop_assert_eq!(m.system_identifier().is_some(), m.version() == 2);
            for f in m.files() {
                prop_assert_eq!(check_relative_path(f.path(), 1024), Ok(()));
                prop_assert!(f.size() <= 1 << 44);
                prop_assert_eq!(f.checksum().as_bytes().len(), f.checksum().algorithm().len());
            }
            prop_assert!(m.wal_ranges().iter().all(|r| r.timeline > 0));
        }
    }
}
