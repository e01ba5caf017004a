//! Framing of backend messages: a one-byte tag, a big-endian `i32` length that counts itself,
//! then the body.
//!
//! [`Framer`] accumulates bytes fed in any split and yields whole [`Frame`]s. The declared length
//! is checked against a limit (the caller's to set per protocol state: a few KiB during
//! startup, a little over 1 GiB for `CopyData`), and it never decides how much memory is
//! reserved: the buffer grows with the bytes that actually arrive, so a 5-byte header declaring
//! a gigabyte costs nothing until the gigabyte has been received.

use bytes::{Buf, Bytes, BytesMut};

/// Largest message the server can send in practice: a `CopyData` or `DataRow` carries at most a
/// 1 GiB field (`MaxAllocSize`) plus its own header.
pub const MAX_MESSAGE_LEN: usize = (1 << 30) + 64 * 1024;

/// A message limit suited to the startup and authentication phase, where nothing legitimate
/// comes close to it (libpq allows 30 000 bytes before authentication completes).
pub const STARTUP_MESSAGE_LEN: usize = 64 * 1024;

/// Length of a message header: tag byte plus `i32` length.
pub const HEADER_LEN: usize = 5;

/// One backend message: its tag and its body (without tag and length).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The message type byte, e.g. `b'd'` for `CopyData`.
    pub tag: u8,
    /// The body. Cheap to clone and to slice: no copy of the bytes is made.
    pub body: Bytes,
}

/// A byte stream that is not a valid sequence of backend messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The declared length is below 4 (the length counts itself).
    #[error("message '{tag}' declares an impossible length {len}", tag = char::from(*tag).escape_default())]
    BadLength {
        /// The message's tag.
        tag: u8,
        /// The declared length field.
        len: i32,
    },
    /// The declared length is above the current limit.
    #[error(
        "message '{tag}' declares {len} bytes, more than the {limit} bytes allowed here",
        tag = char::from(*tag).escape_default()
    )]
    TooLong {
        /// The message's tag.
        tag: u8,
        /// The declared body length.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
}

/// Splits a byte stream into [`Frame`]s.
///
/// ```
/// use pg_wire::Framer;
/// let mut f = Framer::new(pg_wire::frame::MAX_MESSAGE_LEN);
/// f.feed(b"Z\0\0\0");
/// assert_eq!(f.next_frame().unwrap(), None);
/// f.feed(b"\x05I");
/// let frame = f.next_frame().unwrap().unwrap();
/// assert_eq!((frame.tag, &frame.body[..]), (b'Z', &b"I"[..]));
/// ```
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    limit: usize,
    consumed: u64,
}

impl Framer {
    /// A framer that rejects any message whose body is longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { buf: BytesMut::new(), limit, consumed: 0 }
    }

    /// Changes the length limit (for example once authentication is over).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// The length limit in force.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// A buffer to read into directly, avoiding a copy: read into the spare capacity of the
    /// returned `BytesMut` (e.g. with `tokio::io::AsyncReadExt::read_buf`).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// How many bytes are buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Offset in the stream of the first byte not yet returned as a frame, counted from the
    /// first byte fed: says *where* a malformed message starts.
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// How many more bytes the next frame needs before it is complete (at least 1), or 0 when a
    /// whole frame is buffered. Lets an IO layer size its reads — capped by the IO layer: this
    /// is the *declared* length, up to the limit, not a size to reserve.
    pub fn wanted(&self) -> usize {
        match self.peek_len() {
            Some(Ok(len)) => (HEADER_LEN + len).saturating_sub(self.buf.len()),
            _ if self.buf.len() < HEADER_LEN => HEADER_LEN - self.buf.len(),
            _ => 0,
        }
    }

    fn peek_len(&self) -> Option<Result<usize, FrameError>> {
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let tag = self.buf[0];
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if len < 4 {
            return Some(Err(FrameError::BadLength { tag, len }));
        }
        let body = (len - 4) as usize;
        if body > self.limit {
            return Some(Err(FrameError::TooLong { tag, len: body, limit: self.limit }));
        }
        Some(Ok(body))
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    ///
    /// After an error the stream is unusable: the framer does not resynchronise.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let body_len = match self.peek_len() {
            None => return Ok(None),
            Some(r) => r?,
        };
        if self.buf.len() < HEADER_LEN + body_len {
            // Nothing is reserved by the declared length: the buffer grows only as bytes are
            // fed (or read into `buffer_mut`), so memory follows what was received.
            return Ok(None);
        }
        let tag = self.buf[0];
        self.buf.advance(HEADER_LEN);
        let body = self.buf.split_to(body_len).freeze();
        self.consumed += (HEADER_LEN + body_len) as u64;
        Ok(Some(Frame { tag, body }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn huge_declared_length_is_rejected_without_allocating() {
        let mut f = Framer::new(MAX_MESSAGE_LEN);
        f.feed(b"d\xff\xff\xff\xf0");
        let err = f.next_frame().unwrap_err();
        assert!(matches!(err, FrameError::BadLength { tag: b'd', .. }), "{err}");
        let mut f = Framer::new(MAX_MESSAGE_LEN);
        f.feed(b"d\x7f\xff\xff\xf0");
        assert!(matches!(f.next_frame(), Err(FrameError::TooLong { tag: b'd', .. })));
        assert!(f.buffer_mut().capacity() < 1024, "reserved {}", f.buffer_mut().capacity());
    }

    /// Issue 13: the 6-byte input option byte, `d`, 0x40000004 made the framer reserve 1 GiB.
    #[test]
    fn declared_length_reserves_nothing() {
        let mut f = Framer::new(MAX_MESSAGE_LEN);
        f.feed(&[b'd', 0x40, 0x00, 0x00, 0x04]);
        assert_eq!(f.next_frame().unwrap(), None);
        assert_eq!(f.wanted(), 1 << 30);
        assert!(f.buffer_mut().capacity() < 4096, "reserved {}", f.buffer_mut().capacity());
        // A trickle of body bytes grows the buffer with what arrived, not with the declared size.
        for _ in 0..100 {
            f.feed(&[0; 100]);
            assert_eq!(f.next_frame().unwrap(), None);
        }
        assert!(f.buffer_mut().capacity() < 64 * 1024, "reserved {}", f.buffer_mut().capacity());
        // Through the fuzz entry point (first byte = options), as the fuzzer found it.
        crate::fuzzing::frame(&[0, b'd', 0x40, 0x00, 0x00, 0x04]);
    }

    #[test]
    fn startup_limit_applies() {
        let mut f = Framer::new(STARTUP_MESSAGE_LEN);
        f.feed(&encode(b'R', &vec![0; STARTUP_MESSAGE_LEN + 1]));
        let err = f.next_frame().unwrap_err();
        assert_eq!(
            err.to_string(),
            "message 'R' declares 65537 bytes, more than the 65536 bytes allowed here"
        );
    }

    #[test]
    fn wanted_and_offset() {
        let mut f = Framer::new(100);
        assert_eq!(f.wanted(), HEADER_LEN);
        let bytes = encode(b'd', b"hello");
        f.feed(&bytes[..3]);
        assert_eq!(f.wanted(), 2);
        f.feed(&bytes[3..6]);
        assert_eq!(f.wanted(), 4);
        assert_eq!(f.next_frame().unwrap(), None);
        f.feed(&bytes[6..]);
        assert_eq!(f.wanted(), 0);
        assert_eq!(f.next_frame().unwrap().unwrap().body, Bytes::from_static(b"hello"));
        assert_eq!(f.offset(), bytes.len() as u64);
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_frames(
            msgs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..200)), 0..20),
            cuts in proptest::collection::vec(0usize..4000, 0..30),
        ) {
            let stream: Vec<u8> = msgs.iter().flat_map(|(t, b)| encode(*t, b)).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut f = Framer::new(1000);
            let mut got = Vec::new();
            for w in cuts.windows(2) {
                f.feed(&stream[w[0]..w[1]]);
                while let Some(fr) = f.next_frame().unwrap() {
                    got.push((fr.tag, fr.body.to_vec()));
                }
            }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(f.buffered(), 0);
        }
    }
}
