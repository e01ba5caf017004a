//! Entry points of the `frame`, `startup`, `replication`, `ssl` and `walreceiver` fuzz targets
//! (`fuzz/fuzz_targets/`), also replayed by this crate's tests over `fuzz/regressions/<target>/`.
//!
//! All take arbitrary bytes and must never panic, loop or allocate according to a length read
//! from the input; each also checks the rules its parser documents (see `docs/fuzzing.md`).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};

use crate::frame::{Framer, MAX_MESSAGE_LEN};
use crate::message::BackendMessage;
use crate::query::{Collector, Query, QueryEvent};
use crate::replication::receiver::{Phase, ReceiverError, ReceiverEvent, WalReceiver};
use crate::replication::{
    CreatedSlot, IdentifySystem, Lsn, ReplicationMessage, Show, SlotInfo, TimelineHistory,
};
use crate::startup::{
    ChannelBindingPolicy, Password, SslResponse, SslResponseError, Startup, StartupError, StartupEvent,
    StartupParams,
};

/// Piece sizes from 1 to `max` drawn from `seed` (xorshift64*): the split points of a
/// chunk-split equivalence check, chosen by the fuzzer through the seed.
pub fn piece_sizes(seed: u64, max: usize) -> impl Iterator<Item = usize> {
    let mut state = seed | 1;
    std::iter::repeat_with(move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) % max.max(1) as u64) as usize + 1
    })
}

/// `data` cut into pieces of the given sizes (the last one possibly shorter).
pub fn split_by(data: &[u8], sizes: impl Iterator<Item = usize>) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut sizes = sizes;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// Feeds `data` in pieces of `step` bytes (at least 1) to `framer`, calling `each` on every
/// whole frame; stops at the first framing error or when `each` returns `false`.
fn frames(data: &[u8], step: usize, framer: &mut Framer, mut each: impl FnMut(crate::Frame) -> bool) {
    for chunk in data.chunks(step.max(1)) {
        framer.feed(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(f)) => {
                    if !each(f) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    black_box(e.to_string());
                    return;
                }
            }
        }
    }
}

/// Everything a framer produced from some pieces: the frames, the error that stopped it, the
/// offset reached and the bytes left buffered.
#[derive(Debug, PartialEq, Eq)]
struct Framed {
    frames: Vec<crate::Frame>,
    error: Option<crate::FrameError>,
    offset: u64,
    buffered: usize,
}

fn frame_all<'a>(pieces: impl IntoIterator<Item = &'a [u8]>, limit: usize) -> Framed {
    let mut framer = Framer::new(limit);
    let mut out = Framed { frames: Vec::new(), error: None, offset: 0, buffered: 0 };
    'feed: for piece in pieces {
        framer.feed(piece);
        loop {
            match framer.next_frame() {
                Ok(Some(f)) => {
                    // Memory follows what was received: never more than the bytes fed so far
                    // (plus the allocator's doubling), whatever the headers declare.
                    assert!(f.body.len() <= limit);
                    out.frames.push(f);
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    break 'feed;
                }
            }
        }
        assert!(
            framer.buffer_mut().capacity() <= 2 * framer.buffered() + 64 * 1024,
            "the framer holds {} bytes of capacity for {} buffered bytes",
            framer.buffer_mut().capacity(),
            framer.buffered()
        );
    }
    out.offset = framer.offset();
    // After an error the split run stopped feeding earlier: only a clean run's rest compares.
    out.buffered = if out.error.is_none() { framer.buffered() } else { 0 };
    out
}

/// `frame` target. Byte 0: bit 7 selects a small (64 KiB) or full (1 GiB) frame limit, the other
/// bits seed the split points. The rest is a backend byte stream, framed once whole and once
/// split at the seeded points: both must give the same frames, error and offset (chunk-split
/// equivalence). Every frame is parsed, passed through a simple-query machine (restarted after
/// each error or ReadyForQuery), and CopyData payloads are parsed as replication messages, which
/// must encode back to the same bytes.
pub fn frame(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let limit = if first & 0x80 != 0 { crate::frame::STARTUP_MESSAGE_LEN } else { MAX_MESSAGE_LEN };
    let max_piece = usize::from(first & 0x7f) * 3 + 1;
    let whole = frame_all([rest], limit);
    let split = frame_all(split_by(rest, piece_sizes(u64::from(first), max_piece)), limit);
    assert_eq!(whole, split, "framing depends on how the input is split");
    let consumed: u64 = whole.frames.iter().map(|f| 5 + f.body.len() as u64).sum();
    assert_eq!(whole.offset, consumed);
    if whole.error.is_none() {
        assert_eq!(consumed + whole.buffered as u64, rest.len() as u64);
    }
    let mut query = Query::new();
    for f in whole.frames {
        match BackendMessage::parse(f.clone()) {
            Ok(m) => {
                if let BackendMessage::CopyData(payload) = &m {
                    replication_round_trip(payload);
                }
                black_box(m.name());
                black_box(&m);
            }
            Err(e) => {
                black_box(e.to_string());
            }
        }
        match query.handle(f) {
            Ok(QueryEvent::Ready(s)) => {
                black_box(s);
                query = Query::new();
            }
            Ok(QueryEvent::Row(r)) => {
                for i in 0..r.len() {
                    black_box(r.get(i).ok());
                }
            }
            Ok(ev) => {
                black_box(ev);
            }
            Err(e) => {
                black_box(e.to_string());
                query = Query::new();
            }
        }
    }
    if let Some(e) = whole.error {
        black_box(e.to_string());
    }
}

/// A CopyData payload that parses as a replication message encodes back to exactly itself.
fn replication_round_trip(payload: &Bytes) {
    match ReplicationMessage::parse(payload.clone()) {
        Ok(r) => {
            let mut out = BytesMut::new();
            r.encode(&mut out);
            let mut framer = Framer::new(MAX_MESSAGE_LEN);
            framer.feed(&out);
            let f = framer.next_frame().expect("an encoded message frames").expect("whole");
            assert_eq!((f.tag, &f.body[..]), (b'd', &payload[..]), "replication message round trip");
            assert_eq!(ReplicationMessage::parse(f.body), Ok(r));
        }
        Err(e) => {
            black_box(e.to_string());
        }
    }
}

/// `startup` target. Byte 0 chooses the client: bit 0 a password, bits 1-2 the channel-binding
/// policy, bit 3 TLS, bit 4 binding data. Byte 1 is the chunk size. The rest is what the server
/// sends, fed to the startup machine until it finishes or fails.
pub fn startup(data: &[u8]) {
    let [flags, step, rest @ ..] = data else { return };
    let password = (flags & 1 != 0).then(|| Password::new("fuzz-password"));
    let policy = match (flags >> 1) & 3 {
        0 => ChannelBindingPolicy::Disable,
        1 => ChannelBindingPolicy::Require,
        _ => ChannelBindingPolicy::Prefer,
    };
    let mut st = Startup::new(StartupParams::new("fuzz"), password, policy);
    if flags & 8 != 0 {
        st = st.with_tls((flags & 16 != 0).then(|| vec![0x5a; 32]));
    }
    let mut out = BytesMut::new();
    st.start(&mut out).expect("a plain user name encodes");
    let mut framer = Framer::new(st.frame_limit());
    let mut finished = false;
    frames(rest, usize::from(*step), &mut framer, |f| {
        match st.handle(f, &mut out) {
            Ok(StartupEvent::Ready(session)) => {
                black_box(session.server_major());
                black_box(&session);
                finished = true;
            }
            Ok(ev) => {
                black_box(ev);
            }
            Err(e) => {
                black_box((e.to_string(), e.sqlstate().map(str::len), e.failure()));
                finished = true;
            }
        }
        !finished
    });
    if finished {
        let z = crate::Frame { tag: b'Z', body: bytes::Bytes::from_static(b"I") };
        assert!(matches!(st.handle(z, &mut out), Err(StartupError::Finished)), "a finished machine went on");
    }
    black_box(&out);
}

/// `replication` target: the typed results of the replication commands. The input is what the
/// server answers to a simple query (RowDescription, DataRows, CommandComplete, …, ReadyForQuery),
/// collected into result sets (a 64 KiB budget) that are read as `IDENTIFY_SYSTEM`, `SHOW`,
/// `TIMELINE_HISTORY`, `CREATE_REPLICATION_SLOT` and `READ_REPLICATION_SLOT` results; what they
/// accept must follow their documented rules.
pub fn replication(data: &[u8]) {
    let mut framer = Framer::new(MAX_MESSAGE_LEN);
    framer.feed(data);
    let mut collector = Collector::new(64 * 1024);
    loop {
        let f = match framer.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                black_box(e.to_string());
                return;
            }
        };
        let collected = match collector.handle(f) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                black_box(e.to_string());
                return;
            }
        };
        for set in &collected.sets {
            if let Ok(id) = IdentifySystem::from_result(set) {
                assert!(id.timeline >= 1, "timeline 0 accepted");
                black_box(id);
            }
            if let Ok(show) = Show::from_result(set) {
                if let Some(n) = show.size_bytes() {
                    let digits: String = show.value.trim().chars().take_while(char::is_ascii_digit).collect();
                    assert!(digits.parse::<u64>().is_ok_and(|d| d <= n || n == 0 && d == 0));
                }
                black_box(show);
            }
            if let Ok(h) = TimelineHistory::from_result(set) {
                // The name becomes a path in the backup: a plain `XXXXXXXX.history`.
                assert!(h.filename.len() == 16 && h.filename.ends_with(".history"));
                assert!(h.filename[..8].bytes().all(|b| b.is_ascii_hexdigit()));
                black_box(h);
            }
            match CreatedSlot::from_result(set) {
                Ok(c) => {
                    black_box(c);
                }
                Err(e) => {
                    black_box(e.to_string());
                }
            }
            match SlotInfo::from_result(set) {
                Ok(Some(s)) => {
                    assert!(s.restart_tli.is_none_or(|t| t >= 1), "timeline 0 accepted");
                    black_box(s);
                }
                Ok(None) => {}
                Err(e) => {
                    black_box(e.to_string());
                }
            }
        }
        black_box(collected.single().map_err(|e| e.to_string()).err());
        collector = Collector::new(64 * 1024);
    }
}

/// `ssl` target: the server's reply to `SSLRequest`. Byte 0 is the reply byte: only `S` and `N`
/// are accepted. After an `N` the connection goes on in plaintext: the rest is fed (in pieces
/// of `data[1]` bytes) to a startup machine without TLS, as after a refused `sslmode=prefer`.
pub fn ssl(data: &[u8]) {
    let Some((&reply, rest)) = data.split_first() else { return };
    match SslResponse::parse(reply) {
        Ok(SslResponse::Accepted) => assert_eq!(reply, b'S'),
        Ok(SslResponse::Refused) => {
            assert_eq!(reply, b'N');
            startup(&[&[0x01], rest].concat());
        }
        Err(e) => {
            assert!(reply != b'S' && reply != b'N');
            assert_eq!(e == SslResponseError::ServerError, reply == b'E');
            black_box(e.to_string());
        }
    }
}

/// `walreceiver` target. Byte 0 is the chunk size; byte 1: bit 0 a slot, bit 1 set the end
/// LSN after the first piece of WAL, at `start + (byte 1 >> 2) * 64`. The rest is what the
/// server sends after `START_REPLICATION … 0/4000000`; each frame arrives one second after the
/// previous one, and the receiver is polled after each. It must never panic, hand out WAL that
/// does not continue the stream, or go on after it finished or failed.
pub fn walreceiver(data: &[u8]) {
    let [step, flags, rest @ ..] = data else { return };
    let start = Lsn(0x400_0000);
    let mut r = WalReceiver::new(start, flags & 1 != 0);
    let mut out = BytesMut::new();
    let mut now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let mut framer = Framer::new(MAX_MESSAGE_LEN);
    let mut over = false;
    frames(rest, usize::from(*step), &mut framer, |f| {
        now += std::time::Duration::from_secs(1);
        let before = r.position();
        match r.handle(f, now, &mut out) {
            Ok(Some(ReceiverEvent::Wal(x))) => {
                assert_eq!(x.wal_start, before, "WAL that does not continue the stream");
                assert_eq!(r.position().0 - before.0, x.data.len() as u64);
                if flags & 2 != 0 && r.end().is_none() {
                    r.stop_at(Lsn(start.0 + u64::from(flags >> 2) * 64));
                }
            }
            Ok(Some(ReceiverEvent::Finished)) => over = true,
            Ok(ev) => {
                black_box(ev);
            }
            Err(e) => {
                black_box(e.to_string());
                over = true;
            }
        }
        if !over && let Err(e) = r.poll(now, &mut out) {
            panic!("poll failed while the stream was alive: {e}");
        }
        black_box(r.deadline());
        assert!(out.len() <= 2 * (5 + crate::replication::StandbyStatusUpdate::LEN) + 5, "{}", out.len());
        out.clear();
        !over
    });
    if over {
        assert!(matches!(r.phase(), Phase::Finished | Phase::Failed));
        let z = crate::Frame { tag: b'Z', body: bytes::Bytes::from_static(b"I") };
        assert_eq!(r.handle(z, now, &mut out), Err(ReceiverError::Over), "a finished receiver went on");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays every committed input of `fuzz/regressions/<target>/`; returns how many.
    fn replay(target: &str, run: fn(&[u8])) -> usize {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions").join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                run(&std::fs::read(&path).unwrap());
                n += 1;
            }
        }
        n
    }

    #[test]
    fn frame_regressions_replay() {
        assert!(replay("frame", super::frame) >= 3, "the committed seeds are missing");
        // Hostile headers under both limits.
        for first in [0u8, 0x80, 0x7f, 0xff] {
            super::frame(&[first, b'd', 0x7f, 0xff, 0xff, 0xff, 0]);
            super::frame(&[first, b'D', 0, 0, 0, 6, 0x7f, 0xff]);
        }
    }

    #[test]
    fn replication_regressions_replay() {
        assert!(replay("replication", super::replication) >= 3, "the committed seeds are missing");
    }

    #[test]
    fn ssl_regressions_replay() {
        assert!(replay("ssl", super::ssl) >= 2, "the committed seeds are missing");
        for b in 0..=255u8 {
            super::ssl(&[b, 1, b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
        }
    }

    #[test]
    fn walreceiver_regressions_replay() {
        assert!(replay("walreceiver", super::walreceiver) >= 3, "the committed seeds are missing");
        for flags in 0..8u8 {
            super::walreceiver(&[1, flags, b'W', 0, 0, 0, 7, 0, 0, 0, b'd', 0, 0, 0, 4]);
            super::walreceiver(&[3, flags, b'd', 0x7f, 0xff, 0xff, 0xff]);
        }
    }

    #[test]
    fn replication_messages_round_trip() {
        // A keepalive and an XLogData, wrapped in CopyData, through the frame target.
        let mut input = vec![0u8];
        for payload in [
            &b"k\0\0\0\0\x03\0\0\x28\0\0\0\0\0\0\0\x01\x01"[..],
            &b"w\0\0\0\0\x03\0\0\x28\0\0\0\0\x03\0\0\x30\0\0\0\0\0\0\0\x01WALDATA"[..],
        ] {
            input.push(b'd');
            input.extend_from_slice(&(payload.len() as i32 + 4).to_be_bytes());
            input.extend_from_slice(payload);
        }
        super::frame(&input);
    }

    #[test]
    fn startup_regressions_replay() {
        assert!(replay("startup", super::startup) >= 3, "the committed seeds are missing");
        for flags in 0..32u8 {
            super::startup(&[flags, 1, b'R', 0, 0, 0, 8, 0, 0, 0, 10]);
            super::startup(&[flags, 3, b'R', 0x7f, 0xff, 0xff, 0xff]);
        }
    }
}
