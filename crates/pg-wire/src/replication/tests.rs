use std::time::{Duration, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

#[test]
fn literals_double_quotes_only() {
    // Observed with PostgreSQL 15.18: LABEL 'a\b''c é' gives the label a\b'c é.
    assert_eq!(quote_literal("a\\b'c é").unwrap(), "'a\\b''c é'");
    assert_eq!(quote_literal("").unwrap(), "''");
    assert_eq!(quote_literal("C:\\backups\\x").unwrap(), "'C:\\backups\\x'");
    assert_eq!(
        quote_literal("a\0b").unwrap_err().to_string(),
        "the string literal contains a NUL byte, which a protocol message cannot carry"
    );
    assert_eq!(quote_label("nightly 'full'").unwrap(), "'nightly ''full'''");
    assert_eq!(quote_label("a\nb"), Err(QuoteError::LineBreak));
    assert_eq!(quote_label("a\rb"), Err(QuoteError::LineBreak));
    assert!(quote_label("a\0b").unwrap_err().to_string().contains("backup label"));
}

#[test]
fn slot_names() {
    assert_eq!(quote_slot_name("pg_basebackup_17143").unwrap(), "\"pg_basebackup_17143\"");
    assert!(quote_slot_name(&"a".repeat(63)).is_ok());
    for bad in ["", "Slot", "a-b", "a\"b", "a b", "é", &"a".repeat(64)] {
        let err = quote_slot_name(bad).unwrap_err();
        assert!(err.to_string().contains("lower-case letters, digits and underscores"), "{bad}: {err}");
    }
}

#[test]
fn lsn_text() {
    for (s, v) in [
        ("0/3000028", 0x300_0028u64),
        ("0/03000028", 0x300_0028),
        ("a/bc", 0xa_0000_00bc),
        ("FFFFFFFF/FFFFFFFF", u64::MAX),
        ("0/0", 0),
    ] {
        assert_eq!(s.parse::<Lsn>().unwrap(), Lsn(v), "{s}");
    }
    assert_eq!(Lsn(0x300_0028).to_string(), "0/3000028");
    assert_eq!(Lsn(0x1_0000_0000).to_string(), "1/0");
    for bad in
        ["", "0", "/1", "1/", "123456789/0", "0/123456789", "0/x", "0/+1", " 0/1", "0/1 ", "0//1", "-1/0"]
    {
        let err = bad.parse::<Lsn>().unwrap_err();
        assert!(err.to_string().starts_with("invalid LSN"), "{bad}");
    }
}

#[test]
fn wal_file_names_and_segments() {
    let seg = 16 << 20;
    assert_eq!(Lsn(0x300_0028).wal_file_name(1, seg).unwrap(), "000000010000000000000003");
    assert_eq!(Lsn(0x1_0000_0000).wal_file_name(2, seg).unwrap(), "000000020000000100000000");
    assert_eq!(Lsn(0xFFFF_FFFF).wal_file_name(0x1A, seg).unwrap(), "0000001A00000000000000FF");
    assert_eq!(Lsn(0x1_4000_0000).wal_file_name(1, 1 << 30).unwrap(), "000000010000000100000001");
    assert_eq!(Lsn(0x300_0028).wal_file_name(1, 1 << 20).unwrap(), "000000010000000000000030");
    assert_eq!(Lsn(0x300_0028).segment(seg).unwrap(), 3);
    assert_eq!(Lsn(0x300_0028).segment_start(seg).unwrap(), Lsn(0x300_0000));
    assert_eq!(Lsn(0x300_0028).segment_offset(seg).unwrap(), 0x28);
    for bad in [0, 1000, 1 << 19, 3 << 20, 1 << 31] {
        assert_eq!(Lsn(0).segment(bad), Err(SegmentSizeError(bad)), "{bad}");
    }
    assert_eq!(Lsn(u64::MAX).checked_add(1), None);
    assert_eq!(Lsn(10).checked_sub(Lsn(4)), Some(6));
    assert_eq!(Lsn(4).checked_sub(Lsn(10)), None);
}

#[test]
fn timestamps() {
    let y2k = UNIX_EPOCH + Duration::from_secs(946_684_800);
    assert_eq!(PgTimestamp::from_system_time(y2k), PgTimestamp(0));
    assert_eq!(PgTimestamp(0).to_system_time(), y2k);
    assert_eq!(PgTimestamp::from_system_time(UNIX_EPOCH), PgTimestamp(-PG_EPOCH_OFFSET_MICROS));
    let before = UNIX_EPOCH - Duration::from_micros(5);
    assert_eq!(PgTimestamp::from_system_time(before).to_system_time(), before);
    let now = y2k + Duration::from_micros(123_456_789);
    assert_eq!(PgTimestamp::from_system_time(now), PgTimestamp(123_456_789));
}

#[test]
fn keepalive_and_xlogdata() {
    let mut k = vec![b'k'];
    k.extend(0x300_0060u64.to_be_bytes());
    k.extend(1_000_000i64.to_be_bytes());
    k.push(1);
    assert_eq!(
        ReplicationMessage::parse(Bytes::from(k.clone())).unwrap(),
        ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
            wal_end: Lsn(0x300_0060),
            send_time: PgTimestamp(1_000_000),
            reply_requested: true
        })
    );
    let mut bad = k.clone();
    bad[17] = 2;
    assert_eq!(ReplicationMessage::parse(bad.into()), Err(ReplicationMessageError::ReplyFlag(2)));
    assert!(
        ReplicationMessage::parse(Bytes::from(k[..17].to_vec()))
            .unwrap_err()
            .to_string()
            .contains("expected 18")
    );
    assert!(
        ReplicationMessage::parse(Bytes::from(vec![b'w'; 24]))
            .unwrap_err()
            .to_string()
            .contains("at least 25")
    );
    assert_eq!(ReplicationMessage::parse(Bytes::new()), Err(ReplicationMessageError::Empty));
    assert_eq!(
        ReplicationMessage::parse(Bytes::from_static(b"h")).unwrap_err().to_string(),
        "unknown replication message type 'h' (0x68)"
    );
    let mut w = vec![b'w'];
    w.extend(0x300_0000u64.to_be_bytes());
    w.extend(0x300_0010u64.to_be_bytes());
    w.extend(7i64.to_be_bytes());
    let empty = ReplicationMessage::parse(Bytes::from(w.clone())).unwrap();
    assert!(
        matches!(empty, ReplicationMessage::XLogData(ref x) if x.data.is_empty() && x.send_time == PgTimestamp(7))
    );
    w.extend(b"walbytes");
    let ReplicationMessage::XLogData(x) = ReplicationMessage::parse(Bytes::from(w)).unwrap() else {
        panic!()
    };
    assert_eq!((x.wal_start, x.wal_end, &x.data[..]), (Lsn(0x300_0000), Lsn(0x300_0010), &b"walbytes"[..]));
}

#[test]
fn standby_status_update_bytes() {
    let mut out = BytesMut::new();
    StandbyStatusUpdate {
        write: Lsn(0x300_0028),
        flush: Lsn(0x300_0028),
        apply: Lsn::INVALID,
        client_time: PgTimestamp(0x0102_0304_0506_0708),
        reply_requested: false,
    }
    .encode(&mut out);
    let mut want = b"d\0\0\0\x26r".to_vec();
    want.extend(0x300_0028u64.to_be_bytes());
    want.extend(0x300_0028u64.to_be_bytes());
    want.extend(0u64.to_be_bytes());
    want.extend([1, 2, 3, 4, 5, 6, 7, 8, 0]);
    assert_eq!(&out[..], &want[..]);
}

proptest! {
    #[test]
    fn lsn_round_trips(v in any::<u64>()) {
        let s = Lsn(v).to_string();
        prop_assert_eq!(s.parse::<Lsn>().unwrap(), Lsn(v));
        let padded = format!("{:08x}/{:08x}", v >> 32, v as u32);
        prop_assert_eq!(padded.parse::<Lsn>().unwrap(), Lsn(v));
    }

    #[test]
    fn quoting_never_breaks_out(s in "[a-z'\\\\ é\n]{0,20}") {
        let q = quote_literal(&s).unwrap();
        prop_assert!(q.starts_with('\'') && q.ends_with('\''));
        // Undoubling the inside gives the input back.
        prop_assert_eq!(q[1..q.len() - 1].replace("''", "'"), s);
    }

    #[test]
    fn timestamps_round_trip(micros in -1_000_000_000_000_000i64..1_000_000_000_000_000) {
        prop_assert_eq!(PgTimestamp::from_system_time(PgTimestamp(micros).to_system_time()), PgTimestamp(micros));
    }
}
