use super::*;
use proptest::prelude::*;

/// A header block byte-for-byte as PostgreSQL's `tarCreateHeader` (`src/port/tar.c`) writes
/// it: 7 octal digits + space for 8-byte fields, 11 + space for 12-byte ones, base-256 when a
/// value does not fit, checksum as 7 digits + space, `ustar\0` + `00`, uname/gname `postgres`.
pub(crate) fn pg_header(name: &str, typeflag: u8, size: u64, link: &str) -> [u8; 512] {
    fn num(dst: &mut [u8], v: u64) {
        let len = dst.len();
        if v < 1u64 << (3 * (len - 1)) {
            let s = format!("{v:0w$o} ", w = len - 1);
            dst.copy_from_slice(s.as_bytes());
        } else {
            dst.fill(0);
            dst[0] = 0x80;
            let be = v.to_be_bytes();
            dst[len - 8..].copy_from_slice(&be);
        }
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    num(&mut h[100..108], if typeflag == b'5' || typeflag == b'2' { 0o777 } else { 0o600 });
    num(&mut h[108..116], 0o145);
    num(&mut h[116..124], 0o150);
    num(&mut h[124..136], size);
    num(&mut h[136..148], 1_700_000_000);
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..273].copy_from_slice(b"postgres");
    h[297..305].copy_from_slice(b"postgres");
    num(&mut h[329..337], 0);
    num(&mut h[337..345], 0);
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:07o} ").as_bytes());
    h
}

fn resum(h: &mut [u8; 512]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:07o} ").as_bytes());
}

/// A PostgreSQL-style archive: (name, typeflag, data, link) entries, optional terminator.
pub(crate) fn pg_archive(entries: &[(&str, u8, &[u8], &str)], terminator: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, t, data, link) in entries {
        out.extend_from_slice(&pg_header(name, *t, data.len() as u64, link));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    if terminator {
        out.extend_from_slice(&[0; 1024]);
    }
    out
}

/// Simplified event for comparisons: data merged per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Start(Header),
    Data(Vec<u8>),
    EntryEnd,
    End,
}

fn read_split(stream: &[u8], cuts: &[usize]) -> Result<Vec<Ev>, TarError> {
    let bytes = Bytes::copy_from_slice(stream);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.push(0);
    cuts.push(stream.len());
    cuts.sort_unstable();
    let mut r = TarReader::new();
    let mut out: Vec<Ev> = Vec::new();
    for w in cuts.windows(2) {
        r.feed(bytes.slice(w[0]..w[1]));
        while let Some(ev) = r.next_event()? {
            match ev {
                TarEvent::EntryStart(h) => out.push(Ev::Start(h)),
                TarEvent::Data(d) => {
                    assert!(!d.is_empty(), "empty data event");
                    if let Some(Ev::Data(v)) = out.last_mut() {
                        v.extend_from_slice(&d);
                    } else {
                        out.push(Ev::Data(d.to_vec()));
                    }
                }
                TarEvent::EntryEnd => out.push(Ev::EntryEnd),
                TarEvent::End => out.push(Ev::End),
            }
        }
        assert!(r.buffered() == 0, "reader left input unread");
    }
    r.finish()?;
    Ok(out)
}

fn read(stream: &[u8]) -> Result<Vec<Ev>, TarError> {
    read_split(stream, &[])
}

fn err_of(stream: &[u8]) -> TarError {
    read(stream).expect_err("expected an error")
}

#[test]
fn postgres_style_archive_with_terminator() {
    let a = pg_archive(
        &[
            ("backup_label", b'0', b"START WAL LOCATION: 0/3000028\n", ""),
            ("./pg_wal/archive_status/", b'5', b"", ""),
            ("pg_tblspc/16388/", b'2', b"", "/srv/tblspc1"),
            ("global/pg_control", b'0', &[7u8; 8192], ""),
        ],
        true,
    );
    let evs = read(&a).unwrap();
    let starts: Vec<&Header> = evs
        .iter()
        .filter_map(|e| match e {
            Ev::Start(h) => Some(h),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 4);
    assert_eq!(starts[0].path, b"backup_label");
    assert_eq!(starts[0].kind, EntryKind::File);
    assert_eq!(starts[0].mode, 0o600);
    assert_eq!((starts[0].uid, starts[0].gid), (0o145, 0o150));
    assert_eq!(starts[0].mtime, 1_700_000_000);
    assert_eq!(starts[0].uname, "postgres");
    assert_eq!(starts[1].path, b"pg_wal/archive_status");
    assert_eq!(starts[1].kind, EntryKind::Directory);
    assert_eq!(starts[2].path, b"pg_tblspc/16388");
    assert_eq!(starts[2].kind, EntryKind::Symlink);
    assert_eq!(starts[2].link_target.as_deref(), Some("/srv/tblspc1"));
    assert_eq!(starts[3].size, 8192);
    assert_eq!(evs.last(), Some(&Ev::End));
    assert_eq!(evs[1], Ev::Data(b"START WAL LOCATION: 0/3000028\n".to_vec()));
}

#[test]
fn legacy_archive_without_terminator_is_accepted() {
    let a = pg_archive(&[("PG_VERSION", b'0', b"14\n", ""), ("base/", b'5', b"", "")], false);
    let evs = read(&a).unwrap();
    assert_eq!(evs.len(), 5);
    assert_ne!(evs.last(), Some(&Ev::End));
}

#[test]
fn empty_archive_and_trailing_zeros() {
    assert_eq!(read(&[]).unwrap(), vec![]);
    assert_eq!(read(&[0; 1024]).unwrap(), vec![Ev::End]);
    // GNU tar pads to a 10 KiB record: extra zeros after the terminator are fine.
    assert_eq!(read(&[0; 10240]).unwrap(), vec![Ev::End]);
    let mut a = vec![0; 1024];
    a.extend_from_slice(&[0, 0, 1]);
    let e = err_of(&a);
    assert_eq!(e.kind, TarErrorKind::DataAfterEnd);
    assert_eq!(e.offset, 1026);
}

#[test]
fn lone_zero_block() {
    assert_eq!(err_of(&[0; 512]).kind, TarErrorKind::LoneZeroBlock);
    let mut a = vec![0; 512];
    a.extend_from_slice(&pg_archive(&[("x", b'0', b"", "")], false));
    let e = err_of(&a);
    assert_eq!((e.kind, e.offset), (TarErrorKind::LoneZeroBlock, 0));
    assert_eq!(err_of(&[0; 700]).kind, TarErrorKind::Truncated { what: "the end-of-archive terminator" });
}

#[test]
fn truncation_points() {
    let a = pg_archive(&[("a", b'0', &[1u8; 600], "")], false);
    assert_eq!(err_of(&a[..100]).kind, TarErrorKind::Truncated { what: "a header" });
    let e = err_of(&a[..600]);
    assert_eq!(e.kind, TarErrorKind::Truncated { what: "an entry's data" });
    assert_eq!((e.offset, e.path.as_deref()), (0, Some("a")));
    assert_eq!(err_of(&a[..1200]).kind, TarErrorKind::Truncated { what: "an entry's padding" });
    assert!(read(&a).is_ok());
}

#[test]
fn nonzero_padding_is_rejected() {
    let mut a = pg_archive(&[("a", b'0', b"xyz", ""), ("b", b'0', b"", "")], true);
    a[600] = 1;
    let e = err_of(&a);
    assert_eq!((e.kind, e.path.as_deref()), (TarErrorKind::NonZeroPadding, Some("a")));
}

#[test]
fn checksum_unsigned_and_signed() {
    let mut h = pg_header("caf\u{e9}", b'0', 0, "");
    assert!(Header::parse(&h).is_ok());
    // Signed sum: the two bytes of 'é' are >= 0x80 and count negative.
    let (_, signed) = header_checksums(&h);
    h[148..156].copy_from_slice(format!("{signed:07o} ").as_bytes());
    assert!(Header::parse(&h).is_ok());
    h[148..156].copy_from_slice(b"0000001 ");
    let e = Header::parse(&h).unwrap_err();
    assert!(matches!(e, TarErrorKind::BadChecksum { stored: 1, .. }), "{e:?}");
    // GNU form: 6 digits, NUL, space.
    let mut h = pg_header("x", b'0', 0, "");
    let (sum, _) = header_checksums(&h);
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    assert!(Header::parse(&h).is_ok());
}

#[test]
fn numbers_octal_and_base256() {
    assert_eq!(parse_number(b"00000000312 "), Some(0o312));
    assert_eq!(parse_number(b"  0755\0\0"), Some(0o755));
    assert_eq!(parse_number(b"0000000\0"), Some(0));
    assert_eq!(parse_number(b"        "), None);
    assert_eq!(parse_number(b"0000008 "), None);
    assert_eq!(parse_number(b"00 0001 "), None);
    assert_eq!(parse_number(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]), Some(1 << 33));
    assert_eq!(parse_number(&[0xff; 12]), None, "negative base-256");
    assert_eq!(parse_number(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None, "overflow");
    assert_eq!(parse_number(b"77777777777777777777777"), None, "octal overflow");
    // A file of 8 GiB: PostgreSQL switches to base-256.
    let big = 8u64 << 30;
    let h = pg_header("big", b'0', big, "");
    assert_eq!(h[124], 0x80);
    assert_eq!(Header::parse(&h).unwrap().size, big);
    let mut h = pg_header("x", b'0', 0, "");
    h[124..136].copy_from_slice(b"0000000009  ");
    resum(&mut h);
    assert_eq!(Header::parse(&h).unwrap_err(), TarErrorKind::BadNumber { field: "size" });
}

#[test]
fn refused_types() {
    for (t, what) in [
        (b'1', "hard link"),
        (b'x', "PAX extended header"),
        (b'g', "PAX extended header"),
        (b'L', "GNU long name or link"),
        (b'K', "GNU long name or link"),
        (b'S', "GNU extension entry"),
    ] {
        let a = pg_archive(&[("ok", b'0', b"", ""), ("f", t, b"", "t")], true);
        let e = err_of(&a);
        assert_eq!(e.kind, TarErrorKind::Unsupported { typeflag: t, what });
        assert_eq!((e.offset, e.path.as_deref()), (512, Some("f")));
        assert!(e.to_string().contains("offset 512"), "{e}");
    }
    // '\0' is a pre-POSIX regular file; '6' (FIFO) passes through as Other.
    let a = pg_archive(&[("f", 0, b"ab", ""), ("p", b'6', b"", "")], true);
    let evs = read(&a).unwrap();
    assert!(matches!(&evs[0], Ev::Start(h) if h.kind == EntryKind::File));
    assert!(matches!(&evs[3], Ev::Start(h) if h.kind == EntryKind::Other(b'6')));
}

#[test]
fn names() {
    let parse = |name: &[u8], t: u8| {
        let mut h = pg_header("", t, 0, if t == b'2' { "/x" } else { "" });
        h[..100].fill(0);
        h[..name.len()].copy_from_slice(name);
        resum(&mut h);
        Header::parse(&h).map(|h| h.path)
    };
    assert_eq!(parse(b"./pg_wal/summaries/", b'5').unwrap(), b"pg_wal/summaries");
    assert_eq!(parse(b"pg_tblspc/1/", b'2').unwrap(), b"pg_tblspc/1");
    assert_eq!(parse(b"/etc/passwd", b'0'), Err(TarErrorKind::AbsolutePath));
    assert_eq!(parse(b"a/../../b", b'0'), Err(TarErrorKind::DotDot));
    assert_eq!(parse(b"..", b'5'), Err(TarErrorKind::DotDot));
    assert_eq!(parse(b"a//b", b'0'), Err(TarErrorKind::NotNormal));
    assert_eq!(parse(b"a/./b", b'0'), Err(TarErrorKind::NotNormal));
    assert_eq!(parse(b"./", b'5'), Err(TarErrorKind::EmptyName));
    assert_eq!(parse(b"", b'0'), Err(TarErrorKind::EmptyName));
    assert_eq!(parse(b"a/", b'0'), Err(TarErrorKind::TrailingSlash));
    assert_eq!(parse(b"ab\0cd", b'0'), Err(TarErrorKind::NulInName { field: "name" }));
    // A name that is not UTF-8 is kept byte for byte (PostgreSQL copies such files).
    assert_eq!(parse(b"base/\xff\xfe", b'0').unwrap(), b"base/\xff\xfe");
    // A directory name of exactly 99 bytes + '/' fills the field with no NUL (tarCreateHeader).
    let long = format!("{}/", "d".repeat(99));
    assert_eq!(parse(long.as_bytes(), b'5').unwrap(), "d".repeat(99).as_bytes());
    assert_eq!(parse(&[b'f'; 100], b'0').unwrap(), "f".repeat(100).as_bytes());
}

#[test]
fn prefix_is_joined_for_posix_only() {
    let mut h = pg_header("file", b'0', 0, "");
    h[345..348].copy_from_slice(b"dir");
    resum(&mut h);
    assert_eq!(Header::parse(&h).unwrap().path, b"dir/file");
    h[257..265].copy_from_slice(b"ustar  \0");
    resum(&mut h);
    assert_eq!(Header::parse(&h).unwrap().path, b"file");
    h[257..263].copy_from_slice(b"xxxxx\0");
    resum(&mut h);
    assert!(matches!(Header::parse(&h), Err(TarErrorKind::BadMagic { .. })));
}

#[test]
fn symlink_and_directory_checks() {
    let mut h = pg_header("pg_tblspc/1/", b'2', 0, "");
    assert_eq!(Header::parse(&h), Err(TarErrorKind::EmptyLinkTarget));
    h = pg_header("d/", b'5', 10, "");
    assert_eq!(Header::parse(&h), Err(TarErrorKind::SizeOnNonFile { size: 10 }));
}

#[test]
fn poisoned_after_error_and_finish_with_unread_input() {
    let mut r = TarReader::new();
    let mut h = pg_header("x", b'0', 0, "");
    h[0] = b'y';
    r.feed(Bytes::copy_from_slice(&h));
    assert!(matches!(r.next_event(), Err(TarError { kind: TarErrorKind::BadChecksum { .. }, .. })));
    assert_eq!(r.next_event().unwrap_err().kind, TarErrorKind::Poisoned);
    let mut r = TarReader::new();
    r.feed(Bytes::from_static(&[0; 10]));
    assert_eq!(r.finish().unwrap_err().kind, TarErrorKind::Unconsumed { bytes: 10 });
}

#[test]
fn data_is_zero_copy() {
    let a = Bytes::from(pg_archive(&[("f", b'0', &[9u8; 2000], "")], true));
    let mut r = TarReader::new();
    r.feed(a.clone());
    let base = a.as_ptr() as usize;
    while let Some(ev) = r.next_event().unwrap() {
        if let TarEvent::Data(d) = ev {
            assert_eq!(d.as_ptr() as usize - base, 512, "data must be a slice of the fed chunk");
        }
    }
}

/// Builds an archive with the `tar` crate (ustar headers) and compares everything with what
/// `tar::Archive` reads back.
fn tar_crate_archive(entries: &[(String, u8, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_600_000_000);
        h.set_uid(26);
        h.set_gid(26);
        match kind {
            0 => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o640);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            1 => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o700);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            _ => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, "/srv/target").unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn oracle(archive: &[u8]) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(archive);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Regular => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Symlink => EntryKind::Symlink,
            other => EntryKind::Other(other.as_byte()),
        };
        let path = String::from_utf8(e.path_bytes().to_vec()).unwrap();
        let path = path.trim_end_matches('/').as_bytes().to_vec();
        out.push(Ev::Start(Header {
            path,
            kind,
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            size: h.size().unwrap(),
            mtime: h.mtime().unwrap(),
            link_target: e.link_name_bytes().map(|l| String::from_utf8(l.to_vec()).unwrap()),
            uname: h.username().unwrap().unwrap_or("").to_owned(),
            gname: h.groupname().unwrap().unwrap_or("").to_owned(),
        }));
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if !data.is_empty() {
            out.push(Ev::Data(data));
        }
        out.push(Ev::EntryEnd);
    }
    out.push(Ev::End);
    out
}

fn arb_entries() -> impl Strategy<Value = Vec<(String, u8, Vec<u8>)>> {
    let comp = "[a-zA-Z0-9_.-]{1,40}".prop_filter("no dot names", |s| s != "." && s != "..");
    let path = proptest::collection::vec(comp, 1..6).prop_map(|c| c.join("/"));
    let entry = (path, 0u8..3, proptest::collection::vec(any::<u8>(), 0..3000));
    proptest::collection::vec(entry, 0..8).prop_map(|mut v| {
        for e in &mut v {
            if e.1 != 0 {
                e.2.clear();
            }
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn split_invariance(entries in arb_entries(), cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
        let archive = tar_crate_archive(&entries);
        let whole = read(&archive).unwrap();
        let split = read_split(&archive, &cuts).unwrap();
        prop_assert_eq!(&whole, &split);
        // One byte at a time too.
        let all: Vec<usize> = (0..archive.len()).collect();
        prop_assert_eq!(&whole, &read_split(&archive, &all).unwrap());
    }

    #[test]
    fn agrees_with_tar_crate(entries in arb_entries()) {
        let archive = tar_crate_archive(&entries);
        prop_assert_eq!(read(&archive).unwrap(), oracle(&archive));
    }

    #[test]
    fn random_header_blocks_vs_tar_crate(
        name in "[a-z/.]{0,30}",
        t in prop::sample::select(vec![b'0', b'2', b'5', 0u8, b'6', b'1', b'x', b'L']),
        size in 0u64..(1 << 40),
        pokes in proptest::collection::vec((0usize..512, any::<u8>()), 0..4),
        fix_sum in any::<bool>(),
    ) {
        let mut h = pg_header(&name, t, size, if t == b'2' { "/l" } else { "" });
        for (i, b) in pokes {
            h[i] = b;
        }
        if fix_sum {
            resum(&mut h);
        }
        if let Ok(ours) = Header::parse(&h) {
            let theirs = tar::Header::from_byte_slice(&h);
            prop_assert_eq!(theirs.size().unwrap(), ours.size);
            // Paths are bytes (not necessarily UTF-8), as the reader keeps them.
            let mut tp: &[u8] = &theirs.path_bytes();
            while let Some(rest) = tp.strip_prefix(b"./") {
                tp = rest;
            }
            while let Some(rest) = tp.strip_suffix(b"/") {
                tp = rest;
            }
            prop_assert_eq!(tp, &ours.path[..]);
            let tk = theirs.entry_type().as_byte();
            let ok = matches!((tk, ours.kind), (b'0' | 0, EntryKind::File) | (b'5', EntryKind::Directory)
                | (b'2', EntryKind::Symlink)) || ours.kind == EntryKind::Other(tk);
            prop_assert!(ok, "typeflag {} vs {:?}", tk, ours.kind);
        }
    }
}

#[test]
fn fuzz_regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/tar");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            fuzzing::tar(&data);
            if path.file_name().unwrap().to_string_lossy().starts_with("seed-") {
                // Committed seeds are valid archives.
                read(&data[1..]).unwrap();
            }
            n += 1;
        }
    }
    // Also the built-in seeds, so the target is exercised even with an empty directory.
    let seed = pg_archive(&[("backup_label", b'0', b"x", ""), ("base/", b'5', b"", "")], true);
    for first in [0u8, 1, 73, 255] {
        let mut input = vec![first];
        input.extend_from_slice(&seed);
        fuzzing::tar(&input);
        n += 1;
    }
    assert!(n >= 4);
}
