//! Query tests. The `*.bin` files beside this one are the raw bytes PostgreSQL 15.18 sent after
//! a `Query` (captured from a throwaway cluster; `start-replication.bin` keeps the first
//! XLogData and the end of the stream only).

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::frame::{Framer, MAX_MESSAGE_LEN};
use crate::replication::{
    CreatedSlot, IdentifySystem, Lsn, ReplicationMessage, Show, SlotInfo, TimelineHistory,
};

const CAPTURES: &[(&str, &[u8])] = &[
    ("identify-system", include_bytes!("identify-system.bin")),
    ("show-wal-segment-size", include_bytes!("show-wal-segment-size.bin")),
    ("timeline-history-1", include_bytes!("timeline-history-1.bin")),
    ("create-slot", include_bytes!("create-slot.bin")),
    ("read-slot", include_bytes!("read-slot.bin")),
    ("read-slot-missing", include_bytes!("read-slot-missing.bin")),
    ("sql-on-physical", include_bytes!("sql-on-physical.bin")),
    ("empty-query", include_bytes!("empty-query.bin")),
    ("set-parameter-status", include_bytes!("set-parameter-status.bin")),
    ("sql-two-sets", include_bytes!("sql-two-sets.bin")),
    ("copy-out", include_bytes!("copy-out.bin")),
    ("sql-error", include_bytes!("sql-error.bin")),
    ("start-replication", include_bytes!("start-replication.bin")),
];

fn capture(name: &str) -> &'static [u8] {
    CAPTURES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b).unwrap()
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut f = Framer::new(MAX_MESSAGE_LEN);
    f.feed(bytes);
    let mut v = Vec::new();
    while let Some(fr) = f.next_frame().unwrap() {
        v.push(fr);
    }
    assert_eq!(f.buffered(), 0);
    v
}

fn events(bytes: &[u8]) -> Result<Vec<QueryEvent>, QueryError> {
    let mut q = Query::new();
    frames(bytes).into_iter().map(|f| q.handle(f)).collect()
}

fn collect(bytes: &[u8]) -> Result<Collected, CollectError> {
    let mut c = Collector::new(1 << 20);
    for f in frames(bytes) {
        if let Some(done) = c.handle(f)? {
            return Ok(done);
        }
    }
    panic!("no ReadyForQuery");
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(((body.len() + 4) as i32).to_be_bytes());
    v.extend(body);
    v
}

#[test]
fn identify_system() {
    let set = collect(capture("identify-system")).unwrap().single().unwrap();
    assert_eq!(set.tag.as_deref(), Some("IDENTIFY_SYSTEM"));
    assert_eq!(set.rows[0].get_by_name("timeline").unwrap(), Some("1"));
    let id = IdentifySystem::from_result(&set).unwrap();
    assert_eq!(
        id,
        IdentifySystem {
            systemid: 7_711_657_602_428_715_799,
            timeline: 1,
            xlogpos: Lsn(0x400_0440),
            dbname: None
        }
    );
}

#[test]
fn show_and_sizes() {
    let show =
        Show::from_result(&collect(capture("show-wal-segment-size")).unwrap().single().unwrap()).unwrap();
    assert_eq!((show.name.as_str(), show.value.as_str()), ("wal_segment_size", "16MB"));
    assert_eq!(show.size_bytes(), Some(16 << 20));
    for (v, n) in [
        ("1GB", Some(1 << 30)),
        ("8kB", Some(8192)),
        ("0700", Some(700)),
        ("16 MB", Some(16 << 20)),
        ("x", None),
        ("5PB", None),
        // Overflow is refused, never wrapped (issue 13).
        ("17592186044417MB", None),
        ("16777216TB", None),
        ("18446744073709551616", None),
        ("18446744073709551615", Some(u64::MAX)),
    ] {
        assert_eq!(Show { name: String::new(), value: v.into() }.size_bytes(), n, "{v}");
    }
}

#[test]
fn timeline_history_error_after_row_description() {
    let ev = events(capture("timeline-history-1")).unwrap();
    assert!(matches!(&ev[0], QueryEvent::RowDescription(d) if d.fields.len() == 2));
    assert!(matches!(&ev[1], QueryEvent::Error(e) if e.code == "58P01"));
    assert_eq!(ev[2], QueryEvent::Ready(TransactionStatus::Idle));
    let c = collect(capture("timeline-history-1")).unwrap();
    assert_eq!(c.sets.len(), 1);
    assert!(c.sets[0].rows.is_empty() && c.sets[0].tag.is_none());
    let err = c.single().unwrap_err();
    assert!(err.to_string().contains("could not open file \"pg_wal/00000001.history\""), "{err}");
}

#[test]
fn timeline_history_row() {
    let mut bytes = capture("timeline-history-1")[..60].to_vec();
    let content = b"1\t0/3000148\tno recovery target specified\n";
    let mut row = vec![0, 2, 0, 0, 0, 16];
    row.extend(b"00000002.history");
    row.extend((content.len() as i32).to_be_bytes());
    row.extend(content);
    bytes.extend(msg(b'D', &row));
    bytes.extend(msg(b'C', b"TIMELINE_HISTORY\0"));
    bytes.extend(msg(b'Z', b"I"));
    let set = collect(&bytes).unwrap().single().unwrap();
    let h = TimelineHistory::from_result(&set).unwrap();
    assert_eq!(h.filename, "00000002.history");
    assert_eq!(&h.content[..], content);
    // A file name that would escape the WAL directory is refused.
    let mut bad = set.clone();
    bad.rows[0] = Row::new(
        set.description.clone(),
        vec![Some(Bytes::from_static(b"../../etc/passwd")), Some(Bytes::new())],
    )
    .unwrap();
    assert!(TimelineHistory::from_result(&bad).unwrap_err().to_string().contains("invalid \"filename\""));
}

#[test]
fn slots() {
    let created =
        CreatedSlot::from_result(&collect(capture("create-slot")).unwrap().single().unwrap()).unwrap();
    assert_eq!(
        created,
        CreatedSlot {
            slot_name: "pgwire_tmp".into(),
            consistent_point: Lsn(0),
            snapshot_name: None,
            output_plugin: None
        }
    );
    let info =
        SlotInfo::from_result(&collect(capture("read-slot")).unwrap().single().unwrap()).unwrap().unwrap();
    assert_eq!(info.slot_type, "physical");
    assert_eq!(info.restart_lsn, Some("0/1566188".parse().unwrap()));
    assert_eq!(info.restart_tli, Some(1));
    let missing = collect(capture("read-slot-missing")).unwrap().single().unwrap();
    assert_eq!(SlotInfo::from_result(&missing).unwrap(), None);
}

#[test]
fn sql_on_a_physical_walsender_fails_cleanly() {
    let c = collect(capture("sql-on-physical")).unwrap();
    assert_eq!(c.error.as_ref().unwrap().code, "0A000");
    assert_eq!(c.status, Some(TransactionStatus::Idle));
    let c = collect(capture("sql-error")).unwrap();
    assert_eq!(c.error.as_ref().unwrap().message, "division by zero");
}

#[test]
fn normal_session_results() {
    assert_eq!(events(capture("empty-query")).unwrap()[0], QueryEvent::EmptyQuery);
    let ev = events(capture("set-parameter-status")).unwrap();
    assert_eq!(ev[1], QueryEvent::ParameterStatus { name: "application_name".into(), value: "x".into() });
    let c = collect(capture("sql-two-sets")).unwrap();
    assert_eq!(c.sets.len(), 2);
    assert_eq!(c.tags, vec!["SELECT 1".to_owned(), "SELECT 1".to_owned()]);
    let r = &c.sets[0].rows[0];
    assert_eq!(
        (r.get(0).unwrap(), r.get(1).unwrap(), r.get_by_name("c").unwrap()),
        (Some("1"), None, Some("x"))
    );
    assert_eq!(r.get(3).unwrap_err().to_string(), "no column 3 in the result");
    assert!(r.get_by_name("zz").is_err());
    assert_eq!(c.sets[1].rows[0].get(0).unwrap(), Some("2"));
}

#[test]
fn copy_out_hands_out_payloads() {
    let ev = events(capture("copy-out")).unwrap();
    let data: Vec<&[u8]> = ev
        .iter()
        .filter_map(|e| match e {
            QueryEvent::CopyData(b) => Some(&b[..]),
            _ => None,
        })
        .collect();
    assert_eq!(data, vec![&b"1\n"[..], b"2\n", b"3\n"]);
    assert!(
        matches!(ev[0], QueryEvent::CopyOut(CopyResponse { format: 0, ref column_formats }) if column_formats == &[0])
    );
    assert_eq!(ev[4], QueryEvent::CopyDone);
    assert_eq!(ev[5], QueryEvent::CommandComplete("COPY 3".into()));
    assert!(matches!(collect(capture("copy-out")), Err(CollectError::Copy)));
}

#[test]
fn start_replication_stream() {
    let ev = events(capture("start-replication")).unwrap();
    assert!(matches!(&ev[0], QueryEvent::CopyBoth(c) if c.format == 0 && c.column_formats.is_empty()));
    let QueryEvent::CopyData(payload) = &ev[1] else { panic!("{:?}", ev[1]) };
    let ReplicationMessage::XLogData(x) = ReplicationMessage::parse(payload.clone()).unwrap() else {
        panic!()
    };
    assert_eq!(x.wal_start, Lsn(0x400_0000));
    assert_eq!(x.data.len(), payload.len() - 25);
    assert!(x.wal_end >= x.wal_start);
    assert_eq!(
        &ev[2..],
        &[
            QueryEvent::CopyDone,
            QueryEvent::CommandComplete("START_STREAMING".into()),
            QueryEvent::CommandComplete("START_REPLICATION".into()),
            QueryEvent::Ready(TransactionStatus::Idle)
        ]
    );
}

#[test]
fn protocol_violations() {
    let t = &capture("show-wal-segment-size")[..42];
    let d = msg(b'D', b"\0\x01\0\0\0\x0416MB");
    let two_cols = msg(b'D', b"\0\x02\0\0\0\x0416MB\xff\xff\xff\xff");
    let z = msg(b'Z', b"I");
    let copy_data = msg(b'd', b"x");
    let h = msg(b'H', b"\0\0\0");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (d.clone(), "unexpected DataRow message between statements"),
        ([t, &two_cols].concat(), "DataRow has 2 columns but the RowDescription announced 1"),
        (copy_data.clone(), "unexpected CopyData message between statements"),
        ([&h[..], &z].concat(), "unexpected ReadyForQuery message inside a COPY from the server"),
        ([&h[..], t].concat(), "unexpected RowDescription message inside a COPY from the server"),
        ([t, &h].concat(), "unexpected CopyOutResponse message inside a result set"),
        ([&z[..], &z].concat(), "message ReadyForQuery after ReadyForQuery ended the query"),
        ([t, &msg(b'C', b"SHOW\0"), &d].concat(), "unexpected DataRow message between statements"),
        (msg(b'R', b"\0\0\0\0"), "unexpected Authentication message between statements"),
        (msg(b'D', b"\0\x01\0\0"), "malformed DataRow message at body offset 2"),
    ];
    for (bytes, want) in cases {
        let err = events(&bytes).unwrap_err();
        assert!(err.to_string().starts_with(want), "{want}: {err}");
    }
    // An error ends a COPY (no CopyDone), and ReadyForQuery is then fine.
    let e = msg(b'E', b"SERROR\0VERROR\0C58P01\0Mrequested WAL segment has already been removed\0\0");
    let ev = events(&[&h[..], &copy_data, &e, &z].concat()).unwrap();
    assert!(matches!(ev[2], QueryEvent::Error(_)) && ev[3] == QueryEvent::Ready(TransactionStatus::Idle));
    // A notice and a ParameterStatus inside a COPY are fine.
    let n = msg(b'N', b"SNOTICE\0VNOTICE\0C00000\0Mhi\0\0");
    let s = msg(b'S', b"a\0b\0");
    let ev = events(&[&h[..], &n, &copy_data, &s, &msg(b'c', b""), &z].concat()).unwrap();
    assert_eq!(ev.len(), 6);
    // CopyIn: the server waits for the client; the machine is told when it sent CopyDone.
    let mut q = Query::new();
    q.handle(frames(&msg(b'G', b"\0\0\0")).remove(0)).unwrap();
    assert!(q.in_copy());
    assert!(q.handle(frames(&msg(b'C', b"UPLOAD_MANIFEST\0")).remove(0)).is_err());
    let mut q = Query::new();
    q.handle(frames(&msg(b'G', b"\0\0\0")).remove(0)).unwrap();
    q.client_copy_done();
    assert_eq!(
        q.handle(frames(&msg(b'C', b"UPLOAD_MANIFEST\0")).remove(0)).unwrap(),
        QueryEvent::CommandComplete("UPLOAD_MANIFEST".into())
    );
}

#[test]
fn collector_budget() {
    let mut c = Collector::new(10);
    let mut err = None;
    for f in frames(capture("identify-system")) {
        if let Err(e) = c.handle(f) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(CollectError::TooLarge { limit: 10 }));
}

#[test]
fn huge_declared_length_is_rejected_without_allocating() {
    let mut f = Framer::new(MAX_MESSAGE_LEN);
    f.feed(&capture("copy-out")[..10]);
    f.feed(b"d\x7f\xff\xff\xff");
    assert!(f.next_frame().unwrap().is_some());
    assert!(matches!(f.next_frame(), Err(crate::FrameError::TooLong { tag: b'd', .. })));
    assert!(f.buffer_mut().capacity() < 4096);
}

#[test]
fn query_encoder_counts_bytes() {
    let mut out = BytesMut::new();
    crate::message::frontend::query("BASE_BACKUP ( LABEL 'a\\b''c é' )", &mut out).unwrap();
    assert_eq!(i32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize, out.len() - 1);
    assert_eq!(out.last(), Some(&0));
}

proptest! {
    #[test]
    fn any_split_yields_the_same_events(
        which in 0..CAPTURES.len(),
        cuts in proptest::collection::vec(0usize..2000, 0..40),
    ) {
        let bytes = CAPTURES[which].1;
        let want = events(bytes).unwrap();
        let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        bounds.extend([0, bytes.len()]);
        bounds.sort_unstable();
        let mut f = Framer::new(MAX_MESSAGE_LEN);
        let mut q = Query::new();
        let mut got = Vec::new();
        for w in bounds.windows(2) {
            f.feed(&bytes[w[0]..w[1]]);
            while let Some(fr) = f.next_frame().unwrap() {
                got.push(q.handle(fr).unwrap());
            }
        }
        prop_assert!(q.is_done());
        prop_assert_eq!(got, want);
    }
}
