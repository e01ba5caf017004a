//! Entry points of the `frame`, `startup` and `walreceiver` fuzz targets (`fuzz/fuzz_targets/`),
//! also replayed by this crate's tests over `fuzz/regressions/{frame,startup,walreceiver}/`.
//!
//! All take arbitrary bytes and must never panic, loop or allocate according to a length read
//! from the input.

use std::hint::black_box;

use bytes::BytesMut;

use crate::frame::{Framer, MAX_MESSAGE_LEN};
use crate::message::BackendMessage;
use crate::query::{Query, QueryEvent};
use crate::replication::receiver::{Phase, ReceiverError, ReceiverEvent, WalReceiver};
use crate::replication::{Lsn, ReplicationMessage};
use crate::startup::{ChannelBindingPolicy, Password, Startup, StartupError, StartupEvent, StartupParams};

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

/// `frame` target. Byte 0: bit 7 selects a small (64 KiB) or full (1 GiB) frame limit, the other
/// bits a chunk size. The rest is a backend byte stream: every frame is parsed, passed through
/// a simple-query machine (restarted after each error or ReadyForQuery), and CopyData payloads
/// are parsed as replication messages.
pub fn frame(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let limit = if first & 0x80 != 0 { crate::frame::STARTUP_MESSAGE_LEN } else { MAX_MESSAGE_LEN };
    let step = usize::from(first & 0x7f) * 3 + 1;
    let mut framer = Framer::new(limit);
    let mut query = Query::new();
    frames(rest, step, &mut framer, |f| {
        assert!(f.body.len() <= limit);
        match BackendMessage::parse(f.clone()) {
            Ok(m) => {
                if let BackendMessage::CopyData(payload) = &m {
                    match ReplicationMessage::parse(payload.clone()) {
                        Ok(r) => {
                            black_box(r);
                        }
                        Err(e) => {
                            black_box(e.to_string());
                        }
                    }
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
        true
    });
    black_box(framer.offset());
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
    fn walreceiver_regressions_replay() {
        assert!(replay("walreceiver", super::walreceiver) >= 3, "the committed seeds are missing");
        for flags in 0..8u8 {
            super::walreceiver(&[1, flags, b'W', 0, 0, 0, 7, 0, 0, 0, b'd', 0, 0, 0, 4]);
            super::walreceiver(&[3, flags, b'd', 0x7f, 0xff, 0xff, 0xff]);
        }
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
