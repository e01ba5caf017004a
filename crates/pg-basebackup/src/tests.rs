//! Decoder tests on streams built byte-exact from `docs/protocol.md` §4 (message layouts of
//! `basebackup.c` / `basebackup_copy.c`), with real tar archives from the `tar` crate.

use std::io::Write;

use proptest::prelude::*;

use crate::summary::{Chunking, Summary, decode_pieces, split};
use crate::*;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn row_desc(names: &[&str]) -> Vec<u8> {
    let mut b = (names.len() as i16).to_be_bytes().to_vec();
    for n in names {
        b.extend_from_slice(n.as_bytes());
        b.push(0);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&25u32.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
    }
    msg(b'T', &b)
}

fn data_row(vals: &[Option<&str>]) -> Vec<u8> {
    let mut b = (vals.len() as i16).to_be_bytes().to_vec();
    for v in vals {
        match v {
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(s) => {
                b.extend_from_slice(&(s.len() as i32).to_be_bytes());
                b.extend_from_slice(s.as_bytes());
            }
        }
    }
    msg(b'D', &b)
}

fn cc(tag: &str) -> Vec<u8> {
    msg(b'C', format!("{tag}\0").as_bytes())
}

fn notice(severity: &str, code: &str, text: &str) -> Vec<u8> {
    let b = format!("S{severity}\0V{severity}\0C{code}\0M{text}\0\0");
    msg(b'N', b.as_bytes())
}

fn error(code: &str, text: &str) -> Vec<u8> {
    let b = format!("SERROR\0VERROR\0C{code}\0M{text}\0\0");
    msg(b'E', b.as_bytes())
}

const COPY_OUT: &[u8] = &[b'H', 0, 0, 0, 7, 0, 0, 0];
const COPY_DONE: &[u8] = &[b'c', 0, 0, 0, 4];

/// A real tar archive built with the `tar` crate (ustar headers, as PostgreSQL writes them).
fn tar_archive(files: &[(&str, &[u8])], dirs: &[&str], terminated: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in dirs {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o700);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        h.set_uid(101);
        h.set_gid(102);
        b.append_data(&mut h, format!("{d}/"), std::io::empty()).unwrap();
    }
    for (p, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o600);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(101);
        h.set_gid(102);
        b.append_data(&mut h, p, *data).unwrap();
    }
    let mut v = b.into_inner().unwrap();
    if !terminated {
        v.truncate(v.len() - 1024);
    }
    v
}

fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .content_checksum(true)
                .block_mode(lz4_flex::frame::BlockMode::Linked)
                .block_checksums(true);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
}

/// One tablespace of a synthetic backup.
#[derive(Clone)]
struct Ts {
    oid: Option<u32>,
    location: Option<&'static str>,
    tar: Vec<u8>,
}

/// A synthetic response, byte-exact per §4.
#[derive(Clone)]
struct Stream {
    major: u32,
    compression: Compression,
    tablespaces: Vec<Ts>,
    manifest: Option<Vec<u8>>,
    /// Size of the CopyData pieces of archive data.
    piece: usize,
    /// A notice after the first data message of each archive.
    notice_mid_copy: bool,
    /// What comes after the end result set.
    tail: Tail,
}

#[derive(Clone, Copy, PartialEq)]
enum Tail {
    Success,
    ChecksumFailure,
}

impl Stream {
    fn sample(major: u32) -> Self {
        let ts_tar =
            tar_archive(&[("PG_15_202209061/5/16389", &[3u8; 9000])], &["PG_15_202209061"], major >= 15);
        let base_tar = tar_archive(
            &[("backup_label", b"START WAL LOCATION: 0/3000028\n"), ("global/pg_control", &[1u8; 8192])],
            &["global", "pg_wal"],
            major >= 15,
        );
        Stream {
            major,
            compression: Compression::None,
            tablespaces: vec![
                Ts { oid: Some(16388), location: Some("/srv/tblspc1"), tar: ts_tar },
                Ts { oid: None, location: None, tar: base_tar },
            ],
            manifest: (major >= 13).then(|| b"{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n}\n".repeat(50)),
            piece: 3000,
            notice_mid_copy: true,
            tail: Tail::Success,
        }
    }

    fn options(&self) -> DecoderOptions {
        DecoderOptions {
            server_major: self.major,
            manifest: self.manifest.is_some(),
            compression: self.compression,
        }
    }

    fn name(&self, t: &Ts) -> String {
        format!("{}.tar{}", t.oid.map_or("base".to_owned(), |o| o.to_string()), self.compression.suffix())
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(row_desc(&["recptr", "tli"]));
        out.extend(data_row(&[Some("0/3000028"), Some("1")]));
        out.extend(cc("SELECT"));
        out.extend(row_desc(&["spcoid", "spclocation", "size"]));
        for t in &self.tablespaces {
            let oid = t.oid.map(|o| o.to_string());
            out.extend(data_row(&[oid.as_deref(), t.location, Some("23")]));
        }
        out.extend(cc("SELECT"));
        let mut done: u64 = 0;
        if self.major >= 15 {
            out.extend(COPY_OUT);
            for t in &self.tablespaces {
                let mut n = vec![b'n'];
                n.extend_from_slice(self.name(t).as_bytes());
                n.push(0);
                n.extend_from_slice(t.location.unwrap_or("").as_bytes());
                n.push(0);
                out.extend(msg(b'd', &n));
                let data = compress(self.compression, &t.tar);
                for (i, piece) in data.chunks(self.piece).enumerate() {
                    let mut d = vec![b'd'];
                    d.extend_from_slice(piece);
                    out.extend(msg(b'd', &d));
                    if i == 0 && self.notice_mid_copy {
                        out.extend(notice("NOTICE", "00000", "WAL archiving is not enabled"));
                    }
                }
                done += t.tar.len() as u64;
                let mut p = vec![b'p'];
                p.extend_from_slice(&(done as i64).to_be_bytes());
                out.extend(msg(b'd', &p));
            }
            if let Some(m) = &self.manifest {
                out.extend(msg(b'd', b"m"));
                for piece in m.chunks(1000) {
                    let mut d = vec![b'd'];
                    d.extend_from_slice(piece);
                    out.extend(msg(b'd', &d));
                }
            }
            out.extend(COPY_DONE);
        } else {
            for t in &self.tablespaces {
                out.extend(COPY_OUT);
                for (i, piece) in t.tar.chunks(self.piece).enumerate() {
                    out.extend(msg(b'd', piece));
                    if i == 0 && self.notice_mid_copy {
                        out.extend(notice("WARNING", "01000", "skipping special file \"./sock\""));
                    }
                }
                out.extend(COPY_DONE);
            }
            if let Some(m) = &self.manifest {
                out.extend(COPY_OUT);
                for piece in m.chunks(1000) {
                    out.extend(msg(b'd', piece));
                }
                out.extend(COPY_DONE);
            }
        }
        out.extend(row_desc(&["recptr", "tli"]));
        out.extend(data_row(&[Some("0/3000100"), Some("1")]));
        out.extend(cc("SELECT"));
        match self.tail {
            Tail::Success => out.extend(cc(if self.major >= 14 { "BASE_BACKUP" } else { "SELECT" })),
            Tail::ChecksumFailure => {
                out.extend(notice("WARNING", "01000", "2 total checksum verification failures"));
                out.extend(error("XX001", "checksum verification failure during base backup"));
            }
        }
        out.extend(msg(b'Z', b"I"));
        out
    }

    fn decode(&self, chunking: Chunking) -> Summary {
        let bytes = self.bytes();
        decode_pieces(self.options(), split(&bytes, chunking))
    }
}

fn sha(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn assert_complete(s: &Summary, st: &Stream) {
    assert_eq!(s.error, None);
    assert!(s.done);
    assert_eq!(s.start, Some((Lsn(0x3000028), 1)));
    assert_eq!(s.end, Some((Lsn(0x3000100), 1)));
    assert_eq!(s.tablespaces.len(), 2);
    assert_eq!(s.tablespaces[0].oid, Some(16388));
    assert_eq!(s.tablespaces[1].size_kb, Some(23));
    let names: Vec<&str> = s.archives.iter().map(|a| a.name.as_str()).collect();
    let suffix = st.compression.suffix();
    assert_eq!(names, [format!("16388.tar{suffix}"), format!("base.tar{suffix}")]);
    assert!(s.archives.iter().all(|a| a.complete));
    let base = &s.archives[1];
    assert_eq!(base.tablespace_oid, None);
    let paths: Vec<&str> = base.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["global", "pg_wal", "backup_label", "global/pg_control"]);
    assert_eq!(base.entries[3].size, 8192);
    assert_eq!(base.entries[3].sha256, sha(&[1u8; 8192]));
    assert_eq!(s.archives[0].entries[1].path, "PG_15_202209061/5/16389");
    assert_eq!(s.archives[0].entries[1].sha256, sha(&[3u8; 9000]));
    match &st.manifest {
        Some(m) => assert_eq!(s.manifest, Some((m.len() as u64, sha(m)))),
        None => assert_eq!(s.manifest, None),
    }
}

#[test]
fn every_version_decodes_a_complete_backup() {
    for major in [10, 12, 13, 14, 15, 16, 17, 18] {
        let st = Stream::sample(major);
        let s = st.decode(Chunking::AsRecorded);
        assert_complete(&s, &st);
        assert_eq!(s.notices.len(), 2, "one notice inside each archive's COPY");
        if major >= 15 {
            assert_eq!(s.progress.len(), 2);
            assert_eq!(
                *s.progress.last().unwrap(),
                st.tablespaces.iter().map(|t| t.tar.len() as u64).sum::<u64>()
            );
        } else {
            assert!(s.progress.is_empty());
        }
    }
}

#[test]
fn server_side_compression() {
    for c in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let mut st = Stream::sample(16);
        st.compression = c;
        st.piece = 100;
        let s = st.decode(Chunking::Random { seed: 7, max: 700 });
        assert_complete(&s, &st);
    }
}

#[test]
fn concatenated_frames_and_members() {
    for c in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let mut st = Stream::sample(15);
        st.compression = c;
        // Pre-compress as two frames: the stream builder compresses `tar`, so build by hand.
        let tar = st.tablespaces[1].tar.clone();
        let (a, b) = tar.split_at(1000);
        let mut two = compress(c, a);
        two.extend(compress(c, b));
        let mut dec = Decoder::new(st.options()).unwrap();
        let bytes = st.bytes();
        // Replace the base archive's compressed bytes: simpler to check the decompressor alone.
        let mut d = c.decompressor().unwrap();
        let mut out = vec![0u8; 4096];
        let mut got = Vec::new();
        let mut input = &two[..];
        loop {
            let (used, made) = d.step(input, &mut out).unwrap();
            got.extend_from_slice(&out[..made]);
            input = &input[used..];
            if used == 0 && made == 0 {
                break;
            }
        }
        d.finish().unwrap();
        assert_eq!(got, tar, "{c}");
        dec.feed_bytes(&bytes);
        while dec.poll_event().unwrap().is_some() {}
        dec.finish().unwrap();
    }
}

#[test]
fn corrupt_and_truncated_compressed_archives() {
    for c in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let data = compress(c, &tar_archive(&[("f", &[5u8; 5000])], &[], true));
        for cut in [1, data.len() / 2, data.len() - 1] {
            let mut d = c.decompressor().unwrap();
            let mut out = vec![0u8; 1 << 16];
            let mut input = &data[..cut];
            let mut failed = false;
            loop {
                match d.step(input, &mut out) {
                    Ok((0, 0)) => break,
                    Ok((used, _)) => input = &input[used..],
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            assert!(failed || d.finish().is_err(), "{c}: cut at {cut} accepted");
        }
        let mut bad = data.clone();
        let n = bad.len();
        bad[n - 2] ^= 0x55; // inside the trailer / checksum
        let mut d = c.decompressor().unwrap();
        let mut out = vec![0u8; 1 << 16];
        let mut input = &bad[..];
        let mut result = Ok(());
        loop {
            match d.step(input, &mut out) {
                Ok((0, 0)) => break,
                Ok((used, _)) => input = &input[used..],
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        assert!(result.is_err() || d.finish().is_err(), "{c}: corrupted checksum accepted");
    }
}

#[test]
fn checksum_failure_error_after_all_data() {
    let mut st = Stream::sample(15);
    st.tail = Tail::ChecksumFailure;
    let s = st.decode(Chunking::AsRecorded);
    assert!(!s.done);
    assert_eq!(s.end, Some((Lsn(0x3000100), 1)), "the data and end position arrived");
    assert!(s.archives.iter().all(|a| a.complete));
    match s.error {
        Some(DecodeError::Server(e)) => assert_eq!(e.code, "XX001"),
        other => panic!("expected XX001, got {other:?}"),
    }
    // The decoder drains to ReadyForQuery so the connection can be reused.
    let mut dec = Decoder::new(st.options()).unwrap();
    dec.feed_bytes(&st.bytes());
    let mut server_error = false;
    loop {
        match dec.poll_event() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(DecodeError::Server(_)) => server_error = true,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(server_error && dec.ready_for_query() && !dec.is_done());
    assert!(matches!(dec.finish(), Err(DecodeError::Server(e)) if e.code == "XX001"));
}

#[test]
fn error_mid_copy_without_copydone() {
    for major in [14, 15] {
        let st = Stream::sample(major);
        let bytes = st.bytes();
        // Cut after the first few messages of the first archive and append E + Z.
        let cut = bytes.windows(8).position(|w| w == COPY_OUT).unwrap() + 8 + 3000;
        let mut framer = pg_wire::Framer::new(1 << 20);
        framer.feed(&bytes);
        let mut prefix = Vec::new();
        while let Some(f) = framer.next_frame().unwrap() {
            if prefix.len() > cut {
                break;
            }
            prefix.extend(msg(f.tag, &f.body));
        }
        prefix.extend(error("42501", "could not open file \"./unreadable_file\": Permission denied"));
        prefix.extend(msg(b'Z', b"I"));
        let s = decode_pieces(st.options(), [&prefix[..]]);
        assert!(!s.done);
        assert!(matches!(&s.error, Some(DecodeError::Server(e)) if e.code == "42501"), "{:?}", s.error);
        assert!(!s.archives.last().unwrap().complete);
    }
}

#[test]
fn every_truncation_is_an_error() {
    for major in [14, 15] {
        let mut st = Stream::sample(major);
        st.tablespaces[0].tar = tar_archive(&[("PG_15_1/x", b"abc")], &[], major >= 15);
        st.tablespaces[1].tar = tar_archive(&[("backup_label", b"x")], &[], major >= 15);
        st.manifest = Some(b"{}\n".to_vec());
        let bytes = st.bytes();
        for cut in 0..bytes.len() {
            let s = decode_pieces(st.options(), [&bytes[..cut]]);
            assert!(!s.done, "cut at {cut}");
            assert!(matches!(s.error, Some(DecodeError::Truncated { .. })), "cut at {cut}: {:?}", s.error);
        }
        assert!(decode_pieces(st.options(), [&bytes[..]]).done);
    }
}

/// Replaces the message at index `i` (counting from 0) with `with`.
fn replace_message(bytes: &[u8], pred: impl Fn(usize, &pg_wire::Frame) -> bool, with: &[u8]) -> Vec<u8> {
    let mut framer = pg_wire::Framer::new(1 << 20);
    framer.feed(bytes);
    let mut out = Vec::new();
    let mut i = 0;
    let mut replaced = false;
    while let Some(f) = framer.next_frame().unwrap() {
        if !replaced && pred(i, &f) {
            out.extend_from_slice(with);
            replaced = true;
        } else {
            out.extend(msg(f.tag, &f.body));
        }
        i += 1;
    }
    assert!(replaced);
    out
}

fn decode_err(opts: DecoderOptions, bytes: &[u8]) -> DecodeError {
    decode_pieces(opts, [bytes]).error.expect("expected an error")
}

#[test]
fn copystream_violations() {
    let st = Stream::sample(15);
    let o = st.options();
    let b = st.bytes();
    let is_n = |_: usize, f: &pg_wire::Frame| f.tag == b'd' && f.body.first() == Some(&b'n');
    let is_m = |_: usize, f: &pg_wire::Frame| f.tag == b'd' && &f.body[..] == b"m";
    let is_p = |_: usize, f: &pg_wire::Frame| f.tag == b'd' && f.body.first() == Some(&b'p');
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (replace_message(&b, is_n, &msg(b'd', b"dxyz")), "archive data before any 'n'"),
        (replace_message(&b, is_n, &msg(b'd', b"")), "empty CopyData"),
        (replace_message(&b, is_n, &msg(b'd', b"q")), "unknown copystream message type"),
        (replace_message(&b, is_n, &msg(b'd', b"n16388.tar\0/srv/tblspc1")), "NUL terminator"),
        (replace_message(&b, is_n, &msg(b'd', b"n16388.tar\0/srv/tblspc1\0x")), "trailing"),
        (replace_message(&b, is_n, &msg(b'd', b"n../x.tar\0/srv/tblspc1\0")), "archive name"),
        (replace_message(&b, is_n, &msg(b'd', b"n16388.tar\0/elsewhere\0")), "location"),
        (replace_message(&b, is_m, &msg(b'd', b"mx")), "payload"),
        (replace_message(&b, is_p, &msg(b'd', b"p\0\0\0\x01")), "not 8"),
        (replace_message(&b, is_p, &msg(b'd', b"p\xff\xff\xff\xff\xff\xff\xff\xff")), "negative"),
        (replace_message(&b, |_, f| f.tag == b'H', &msg(b'W', &[0, 0, 0])), "unexpected message 'W'"),
        (replace_message(&b, |_, f| f.tag == b'c', &[&msg(b'd', b"m")[..], COPY_DONE].concat()), "second"),
    ];
    for (bytes, needle) in cases {
        let e = decode_err(o, &bytes);
        let text = e.to_string();
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
        assert!(text.contains("offset"), "{text}");
    }
    // A manifest that was not requested.
    let mut no_manifest = o;
    no_manifest.manifest = false;
    assert!(decode_err(no_manifest, &b).to_string().contains("not requested"));
    // A requested manifest that never came.
    let mut st2 = Stream::sample(15);
    st2.manifest = None;
    assert!(decode_err(o, &st2.bytes()).to_string().contains("manifest was not sent"));
}

#[test]
fn legacy_violations() {
    let st = Stream::sample(14);
    let o = st.options();
    let mut st2 = st.clone();
    st2.manifest = None;
    assert!(decode_err(o, &st2.bytes()).to_string().contains("manifest was not sent"));
    let mut no_manifest = o;
    no_manifest.manifest = false;
    assert!(decode_err(no_manifest, &st.bytes()).to_string().contains("more COPY streams"));
    let b = st.bytes();
    let e = decode_err(o, &replace_message(&b, |_, f| f.tag == b'H', &msg(b'G', &[0, 0, 0])));
    assert!(matches!(e, DecodeError::Unexpected { tag: b'G', .. }), "{e}");
    // A broken tar inside a legacy COPY names the archive.
    let mut bad = st.clone();
    bad.tablespaces[1].tar[0] = b'X';
    let e = decode_err(o, &bad.bytes());
    assert!(matches!(&e, DecodeError::Tar { archive, .. } if archive == "base.tar"), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
    assert!(matches!(
        Decoder::new(DecoderOptions { server_major: 12, manifest: true, compression: Compression::None }),
        Err(DecodeError::Unsupported(_))
    ));
}

#[test]
fn result_set_violations() {
    let st = Stream::sample(16);
    let o = st.options();
    let b = st.bytes();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (replace_message(&b, |i, _| i == 1, &data_row(&[None, Some("1")])), "non-NULL"),
        (replace_message(&b, |i, _| i == 1, &data_row(&[Some("3000028"), Some("1")])), "not an LSN"),
        (replace_message(&b, |i, _| i == 1, &data_row(&[Some("0/1"), Some("0")])), "timeline"),
        (replace_message(&b, |i, _| i == 0, &row_desc(&["recptr"])), "columns"),
        (replace_message(&b, |i, _| i == 5, &data_row(&[Some("16388"), Some("/a"), Some("1")])), "duplicate"),
        (replace_message(&b, |i, _| i == 5, &data_row(&[Some("16388"), None, Some("1")])), "both"),
        (replace_message(&b, |i, _| i == 4, &data_row(&[None, None, None])), "after the main"),
        (replace_message(&b, |i, _| i == 0, &data_row(&[Some("0/1"), Some("1")])), "unexpected message 'D'"),
    ];
    for (bytes, needle) in cases {
        let text = decode_err(o, &bytes).to_string();
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
    }
    // Zero tablespace rows.
    let mut zero = Vec::new();
    zero.extend(row_desc(&["recptr", "tli"]));
    zero.extend(data_row(&[Some("0/3000028"), Some("1")]));
    zero.extend(cc("SELECT"));
    zero.extend(row_desc(&["spcoid", "spclocation", "size"]));
    zero.extend(cc("SELECT"));
    assert!(decode_err(o, &zero).to_string().contains("main data directory last"));
    // Anything after ReadyForQuery, a whole message or a piece of one: `Done` was already
    // produced (the response was complete), then the extra bytes are an error and `finish`
    // fails, so the caller (which calls `finish` on `Done`) does not report success.
    for tail in [msg(b'Z', b"I"), vec![0, 0, 0]] {
        let mut extra = b.clone();
        extra.extend(&tail);
        let s = decode_pieces(o, [&extra[..]]);
        assert!(s.done);
        let e = s.error.expect("bytes after ReadyForQuery are an error");
        assert!(
            matches!(e, DecodeError::Unexpected { state: "after ReadyForQuery (backup complete)", .. }),
            "{e}"
        );
    }
}

#[test]
fn feed_frame_matches_feed_bytes_and_data_is_zero_copy() {
    let st = Stream::sample(15);
    let bytes = st.bytes();
    let mut framer = pg_wire::Framer::new(1 << 20);
    framer.feed(&bytes);
    let mut dec = Decoder::new(st.options()).unwrap();
    let mut frames_in = 0;
    let mut data_events = 0;
    while let Some(f) = framer.next_frame().unwrap() {
        let body = f.body.clone();
        dec.feed_frame(f);
        frames_in += 1;
        while let Some(ev) = dec.poll_event().unwrap() {
            if let Event::EntryData(d) = ev {
                let (lo, hi) = (body.as_ptr() as usize, body.as_ptr() as usize + body.len());
                assert!((lo..hi).contains(&(d.as_ptr() as usize)), "data must be a slice of the CopyData");
                data_events += 1;
            }
        }
    }
    dec.finish().unwrap();
    assert!(frames_in > 10 && data_events > 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn split_invariance(
        major in prop::sample::select(vec![12u32, 13, 14, 15, 16, 17, 18]),
        comp in 0usize..4,
        piece in 1usize..5000,
        cuts in proptest::collection::vec(any::<usize>(), 0..60),
    ) {
        let mut st = Stream::sample(major);
        if major >= 15 {
            st.compression = [Compression::None, Compression::Gzip, Compression::Lz4, Compression::Zstd][comp];
        }
        st.piece = piece;
        let bytes = st.bytes();
        let whole = decode_pieces(st.options(), [&bytes[..]]);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        let split_summary = decode_pieces(st.options(), pieces);
        prop_assert!(whole.done);
        prop_assert_eq!(whole, split_summary);
    }
}

#[test]
fn fuzz_regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/basebackup");
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for entry in rd {
            let path = entry.unwrap().path();
            if path.is_file() {
                let data = std::fs::read(&path).unwrap();
                fuzzing::decode(&data);
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with("seed-") && data.len() > 2 {
                    // Committed seeds are valid streams unless their name says otherwise.
                    let s = decode_pieces(fuzzing::options(data[0]), [&data[2..]]);
                    assert_eq!(s.done, !name.contains("truncated"), "{name}: {:?}", s.error);
                }
                n += 1;
            }
        }
    }
    // Built-in seeds: a valid stream of each generation, as the fuzz target would see it.
    for (opt, major) in [(8u8, 13u32), (3, 15), (0x12, 16), (0x3B, 15), (0x21, 17)] {
        let o = fuzzing::options(opt);
        assert_eq!(o.server_major, major);
        let mut st = Stream::sample(major);
        st.compression = o.compression;
        if !o.manifest {
            st.manifest = None;
        }
        let mut input = vec![opt, 50];
        input.extend(st.bytes());
        fuzzing::decode(&input);
        assert!(decode_pieces(o, [&input[2..]]).done, "seed for {major} must decode");
        n += 1;
    }
    assert!(n >= 3);
}
