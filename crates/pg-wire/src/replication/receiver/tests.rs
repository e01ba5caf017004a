//! The WAL receiver without a server: frames built by hand (and one stream captured from
//! PostgreSQL 15.18), times given as values.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::frame::{Framer, MAX_MESSAGE_LEN};

const SEG: u64 = 0x300_0000;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn frame(tag: u8, body: &[u8]) -> Frame {
    Frame { tag, body: Bytes::copy_from_slice(body) }
}

fn copy_both() -> Frame {
    frame(b'W', b"\0\0\0")
}

fn xlog(start: u64, data: &[u8]) -> Frame {
    let mut b = vec![b'w'];
    b.extend(start.to_be_bytes());
    b.extend(start.wrapping_add(data.len() as u64).to_be_bytes());
    b.extend(0i64.to_be_bytes());
    b.extend(data);
    frame(b'd', &b)
}

fn keepalive(wal_end: u64, reply: bool) -> Frame {
    let mut b = vec![b'k'];
    b.extend(wal_end.to_be_bytes());
    b.extend(0i64.to_be_bytes());
    b.push(u8::from(reply));
    frame(b'd', &b)
}

fn error_response(code: &str, message: &str) -> Frame {
    frame(b'E', format!("SERROR\0VERROR\0C{code}\0M{message}\0\0").as_bytes())
}

fn command_complete(tag: &str) -> Frame {
    frame(b'C', format!("{tag}\0").as_bytes())
}

fn ready() -> Frame {
    frame(b'Z', b"I")
}

/// The end-of-timeline result set of `StartReplication` (walsender.c).
fn next_timeline(tli: &str, lsn: &str) -> [Frame; 2] {
    let mut t = BytesMut::new();
    t.put_i16(2);
    for (name, oid) in [("next_tli", 20), ("next_tli_startpos", 25)] {
        t.put_slice(name.as_bytes());
        t.put_u8(0);
        t.put_i32(0);
        t.put_i16(0);
        t.put_i32(oid);
        t.put_i16(-1);
        t.put_i32(-1);
        t.put_i16(0);
    }
    let mut d = BytesMut::new();
    d.put_i16(2);
    for v in [tli, lsn] {
        d.put_i32(v.len() as i32);
        d.put_slice(v.as_bytes());
    }
    [frame(b'T', &t), frame(b'D', &d)]
}

/// What the client sent, decoded.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Status { write: u64, flush: u64, apply: u64, time: i64, reply: bool },
    CopyDone,
}

fn sent(out: &mut BytesMut) -> Vec<Sent> {
    let mut v = Vec::new();
    let bytes = out.split().freeze();
    let mut rest = &bytes[..];
    while let Some((&tag, tail)) = rest.split_first() {
        let len = i32::from_be_bytes(tail[..4].try_into().unwrap()) as usize;
        let body = &tail[4..len];
        rest = &tail[len..];
        match tag {
            b'c' => v.push(Sent::CopyDone),
            b'd' => {
                assert_eq!((body[0], body.len()), (b'r', StandbyStatusUpdate::LEN));
                let u = |i: usize| u64::from_be_bytes(body[1 + 8 * i..9 + 8 * i].try_into().unwrap());
                v.push(Sent::Status {
                    write: u(0),
                    flush: u(1),
                    apply: u(2),
                    time: u(3) as i64,
                    reply: body[33] != 0,
                });
            }
            other => panic!("unexpected frontend message {:?}", char::from(other)),
        }
    }
    v
}

fn status(position: u64, at: SystemTime) -> Sent {
    Sent::Status {
        write: position,
        flush: position,
        apply: 0,
        time: PgTimestamp::from_system_time(at).0,
        reply: false,
    }
}

/// A receiver that has entered streaming at `SEG` (and sent its first status update at t(0)).
fn streaming() -> (WalReceiver, BytesMut) {
    let mut r = WalReceiver::new(Lsn(SEG), true);
    let mut out = BytesMut::new();
    assert_eq!(r.deadline(), None, "no timer before streaming");
    assert_eq!(r.handle(copy_both(), t(0), &mut out).unwrap(), None);
    assert_eq!(r.phase(), Phase::Streaming);
    assert!(r.deadline().unwrap() <= t(0), "the first status update is due at once");
    r.poll(t(0), &mut out).unwrap();
    assert_eq!(sent(&mut out), [status(SEG, t(0))]);
    (r, out)
}

fn wal(r: &mut WalReceiver, out: &mut BytesMut, start: u64, len: usize, now: SystemTime) {
    let data = vec![7u8; len];
    match r.handle(xlog(start, &data), now, out).unwrap() {
        Some(ReceiverEvent::Wal(x)) => {
            assert_eq!((x.wal_start, &x.data[..]), (Lsn(start), &data[..]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn keepalive_reply_requested() {
    let (mut r, mut out) = streaming();
    wal(&mut r, &mut out, SEG, 100, t(1));
    // A keepalive that asks for nothing gets nothing.
    assert_eq!(r.handle(keepalive(SEG + 100, false), t(2), &mut out).unwrap(), None);
    assert!(out.is_empty());
    // One that asks gets a status update at once, confirming what was handed out.
    assert_eq!(r.handle(keepalive(SEG + 100, true), t(3), &mut out).unwrap(), None);
    assert_eq!(sent(&mut out), [status(SEG + 100, t(3))]);
    // ... which restarts the interval.
    assert_eq!(r.deadline(), Some(t(13)));
    r.poll(t(12), &mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn status_every_interval() {
    let (mut r, mut out) = streaming();
    assert_eq!(r.deadline(), Some(t(10)));
    r.poll(t(5), &mut out).unwrap();
    assert!(out.is_empty(), "not due yet");
    wal(&mut r, &mut out, SEG, 8192, t(6));
    r.poll(t(10), &mut out).unwrap();
    assert_eq!(sent(&mut out), [status(SEG + 8192, t(10))]);
    assert_eq!(r.deadline(), Some(t(20)));
    // A clock that went backwards: one update too many rather than none for a long time.
    r.poll(t(4), &mut out).unwrap();
    assert_eq!(sent(&mut out), [status(SEG + 8192, t(4))]);

    // Without a slot, nothing is confirmed as flushed.
    let mut r = WalReceiver::new(Lsn(SEG), false).with_status_interval(Duration::from_secs(1));
    r.handle(copy_both(), t(0), &mut out).unwrap();
    r.poll(t(0), &mut out).unwrap();
    r.poll(t(1), &mut out).unwrap();
    let flush_zero = |s: &Sent| matches!(s, Sent::Status { flush: 0, write, .. } if *write == SEG);
    let all = sent(&mut out);
    assert!(all.len() == 2 && all.iter().all(flush_zero), "{all:?}");
}

#[test]
fn stops_at_the_end_lsn() {
    let (mut r, mut out) = streaming();
    wal(&mut r, &mut out, SEG, 1000, t(1));
    // The end becomes known while WAL is still missing: nothing ends yet.
    r.stop_at(Lsn(SEG + 1500));
    r.poll(t(1), &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(r.phase(), Phase::Streaming);
    // A payload that crosses the end: the stream ends after it, with a last status update.
    wal(&mut r, &mut out, SEG + 1000, 1000, t(2));
    r.poll(t(2), &mut out).unwrap();
    assert_eq!(sent(&mut out), [status(SEG + 2000, t(2)), Sent::CopyDone]);
    assert_eq!((r.phase(), r.deadline()), (Phase::Ending, None));
    // What was in flight is ignored; a keepalive asking for a reply gets none after CopyDone.
    assert_eq!(r.handle(xlog(SEG + 2000, b"late"), t(3), &mut out).unwrap(), None);
    assert_eq!(r.handle(keepalive(SEG + 2004, true), t(3), &mut out).unwrap(), None);
    assert!(out.is_empty());
    assert_eq!(r.position(), Lsn(SEG + 2000));
    for f in [frame(b'c', b""), command_complete("START_STREAMING"), command_complete("START_REPLICATION")] {
        assert_eq!(r.handle(f, t(3), &mut out).unwrap(), None);
    }
    assert_eq!(r.handle(ready(), t(3), &mut out).unwrap(), Some(ReceiverEvent::Finished));
    assert!(r.is_finished() && out.is_empty());
    assert_eq!(r.handle(ready(), t(4), &mut out), Err(ReceiverError::Over));
    assert_eq!(r.poll(t(4), &mut out), Err(ReceiverError::Over));
}

#[test]
fn an_end_already_reached_ends_at_the_next_poll() {
    let (mut r, mut out) = streaming();
    wal(&mut r, &mut out, SEG, 4096, t(1));
    r.stop_at(Lsn(SEG + 100));
    r.poll(t(1), &mut out).unwrap();
    assert_eq!(sent(&mut out), [status(SEG + 4096, t(1)), Sent::CopyDone]);
}

/// The stream PostgreSQL 15.18 sent for a `START_REPLICATION` that the client ended after the
/// first XLogData (`query/start-replication.bin`).
#[test]
fn a_captured_stream_ends_cleanly() {
    let mut framer = Framer::new(MAX_MESSAGE_LEN);
    framer.feed(include_bytes!("../../query/start-replication.bin"));
    let mut frames = std::iter::from_fn(|| framer.next_frame().unwrap());
    let mut r = WalReceiver::new(Lsn(0x400_0000), true);
    let mut out = BytesMut::new();
    let mut received = 0;
    for f in frames.by_ref() {
        if let Some(ReceiverEvent::Wal(x)) = r.handle(f, t(0), &mut out).unwrap() {
            received += x.data.len() as u64;
            break;
        }
    }
    assert!(received > 0);
    r.stop_at(Lsn(0x400_0000 + received));
    r.poll(t(0), &mut out).unwrap();
    assert_eq!(sent(&mut out).last(), Some(&Sent::CopyDone));
    let events: Vec<_> = frames.map(|f| r.handle(f, t(1), &mut out).unwrap()).collect();
    assert_eq!(events.last(), Some(&Some(ReceiverEvent::Finished)));
    assert!(r.is_finished());
}

#[test]
fn a_timeline_switch_is_an_error() {
    let (mut r, mut out) = streaming();
    wal(&mut r, &mut out, SEG, 512, t(1));
    r.stop_at(Lsn(SEG + 4096));
    // The server ends its timeline: we answer CopyDone and read where the next one starts.
    assert_eq!(r.handle(frame(b'c', b""), t(2), &mut out).unwrap(), None);
    assert_eq!(sent(&mut out), [Sent::CopyDone]);
    assert_eq!(r.phase(), Phase::EndedEarly);
    let [desc, row] = next_timeline("2", "0/3000200");
    for f in [desc, row, command_complete("START_STREAMING")] {
        assert_eq!(r.handle(f, t(2), &mut out).unwrap(), None);
    }
    let err = r.handle(ready(), t(2), &mut out).unwrap_err();
    assert_eq!(
        err,
        ReceiverError::TimelineEnded {
            at: Lsn(SEG + 512),
            end: Some(Lsn(SEG + 4096)),
            next_timeline: Some((2, Lsn(0x300_0200))),
        }
    );
    assert_eq!(
        err.to_string(),
        "the server ended the WAL stream at 0/3000200, before the backup's end 0/3001000: its timeline \
         ended; timeline 2 starts at 0/3000200 (was the server promoted?)"
    );
    assert_eq!(r.phase(), Phase::Failed);

    // A start point at the very end of a historic timeline: the result set comes at once.
    let mut r = WalReceiver::new(Lsn(SEG), true);
    let [desc, row] = next_timeline("3", "0/3000000");
    r.handle(desc, t(0), &mut out).unwrap();
    r.handle(row, t(0), &mut out).unwrap();
    r.handle(command_complete("START_STREAMING"), t(0), &mut out).unwrap();
    let err = r.handle(ready(), t(0), &mut out).unwrap_err();
    assert!(
        matches!(err, ReceiverError::TimelineEnded { next_timeline: Some((3, _)), end: None, .. }),
        "{err}"
    );
    assert!(out.is_empty(), "no COPY was started, so none is ended");
}

#[test]
fn an_error_response_mid_stream_keeps_its_sqlstate() {
    let (mut r, mut out) = streaming();
    wal(&mut r, &mut out, SEG, 64, t(1));
    let err = r
        .handle(
            error_response("57P01", "terminating connection due to administrator command"),
            t(2),
            &mut out,
        )
        .unwrap_err();
    let ReceiverError::Server { error, at, started } = &err else { panic!("{err:?}") };
    assert_eq!((error.code.as_str(), *at, *started), ("57P01", Lsn(SEG + 64), true));
    assert_eq!(
        err.to_string(),
        "the server failed the WAL stream at 0/3000040: ERROR: terminating connection due to \
         administrator command (SQLSTATE 57P01)"
    );
    assert_eq!(r.handle(ready(), t(2), &mut out), Err(ReceiverError::Over));

    // START_REPLICATION itself refused.
    let mut r = WalReceiver::new(Lsn(SEG), true);
    let err = r
        .handle(
            error_response(
                "58P01",
                "requested WAL segment 000000010000000000000003 has already been removed",
            ),
            t(0),
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(&err, ReceiverError::Server { started: false, error, .. } if error.code == "58P01"));
    assert!(
        err.to_string().starts_with("START_REPLICATION failed at 0/3000000: ERROR: requested WAL segment")
    );
    // Notices pass through.
    let mut r = WalReceiver::new(Lsn(SEG), true);
    let notice = frame(b'N', b"SWARNING\0VWARNING\0C01000\0Mcareful\0\0");
    assert!(
        matches!(r.handle(notice, t(0), &mut out), Ok(Some(ReceiverEvent::Notice(n))) if n.message == "careful")
    );
}

#[test]
fn malformed_streams_are_errors() {
    let cases: Vec<(Vec<Frame>, &str)> = vec![
        (vec![xlog(SEG + 8, b"x")], "WAL payload at 0/3000008 does not continue the stream at 0/3000000"),
        (vec![frame(b'd', b"x")], "invalid replication message in the WAL stream at 0/3000000"),
        (vec![keepalive(SEG, false), frame(b'd', b"k\0")], "invalid replication message in the WAL stream"),
        (
            vec![command_complete("COPY 0")],
            "the server ended the WAL stream at 0/3000000 without finishing it",
        ),
        (vec![copy_both()], "protocol violation in the WAL stream at 0/3000000"),
        (vec![ready()], "protocol violation in the WAL stream"),
    ];
    for (frames, expected) in cases {
        let (mut r, mut out) = streaming();
        let err = frames.into_iter().find_map(|f| r.handle(f, t(1), &mut out).err()).expect("an error");
        assert!(err.to_string().starts_with(expected), "{err} / {expected}");
        assert_eq!(r.phase(), Phase::Failed);
    }
    // The cause of a malformed message is its source, not repeated in the message.
    let (mut r, mut out) = streaming();
    let err = r.handle(frame(b'd', b"q"), t(1), &mut out).unwrap_err();
    let source = std::error::Error::source(&err).expect("a source").to_string();
    assert!(source.contains("unknown replication message type 'q'") && !err.to_string().contains(&source));
    // WAL before streaming started.
    let mut r = WalReceiver::new(Lsn(SEG), true);
    assert!(r.handle(xlog(SEG, b"x"), t(0), &mut BytesMut::new()).is_err());
    // A payload that would run past the largest LSN.
    let mut r = WalReceiver::new(Lsn(u64::MAX - 1), true);
    let mut out = BytesMut::new();
    r.handle(copy_both(), t(0), &mut out).unwrap();
    let err = r.handle(xlog(u64::MAX - 1, b"abc"), t(0), &mut out).unwrap_err();
    assert!(matches!(err, ReceiverError::Overflow { len: 3, .. }), "{err}");
}
