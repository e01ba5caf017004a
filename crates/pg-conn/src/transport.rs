//! The byte stream under a connection: TCP, Unix socket, or TLS over TCP.
//!
//! Every TCP socket gets libpq's keepalive settings (`keepalives`, `keepalives_idle`,
//! `keepalives_interval`, `keepalives_count`, `tcp_user_timeout`; libpq-connect.html) before
//! anything is sent, and every read may be bounded by a read-inactivity timeout
//! ([`Stream::set_read_timeout`]).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pg_config::Keepalives;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// `SSLRequest`: length 8, code 80877103 (protocol-message-formats.html).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A connected socket, possibly wrapped in TLS, with its read-inactivity limit.
#[derive(Debug)]
pub(crate) struct Stream {
    io: Io,
    read_timeout: Option<Duration>,
    /// Since when a read has been waiting for data. A read dropped before it got any (a
    /// `select!` that picked another branch) keeps the clock running for the next one; a read
    /// that got data stops it, so time the caller spends with the data never counts.
    waiting_since: Option<Instant>,
}

/// The socket itself.
#[derive(Debug)]
enum Io {
    /// Plain TCP.
    Tcp(TcpStream),
    /// Unix-domain socket.
    Unix(UnixStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The server's answer to `SSLRequest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslReply {
    /// `S`: go ahead with the handshake.
    Accepted,
    /// `N`: the server does not do TLS.
    Refused,
}

/// Applies libpq's keepalive settings to a TCP socket. As libpq: `keepalives=0` leaves
/// `SO_KEEPALIVE` off and ignores the rest; an unset (or zero) idle time, interval, count or user
/// timeout keeps the system's default.
pub(crate) fn apply_keepalives(socket: &TcpStream, k: &Keepalives) -> io::Result<()> {
    let sock = socket2::SockRef::from(socket);
    if k.enabled {
        let mut params = socket2::TcpKeepalive::new();
        if let Some(idle) = k.idle.filter(|d| !d.is_zero()) {
            params = params.with_time(idle);
        }
        if let Some(interval) = k.interval.filter(|d| !d.is_zero()) {
            params = params.with_interval(interval);
        }
        if let Some(count) = k.count.filter(|c| *c > 0) {
            params = params.with_retries(count);
        }
        sock.set_tcp_keepalive(&params)?;
    }
    if let Some(limit) = k.tcp_user_timeout.filter(|d| !d.is_zero()) {
        sock.set_tcp_user_timeout(Some(limit))?;
    }
    Ok(())
}

impl Stream {
    fn new(io: Io) -> Self {
        Self { io, read_timeout: None, waiting_since: None }
    }

    /// Connects over TCP, with `TCP_NODELAY` (every message we send is small and awaited) and
    /// the keepalive settings `k`.
    pub(crate) async fn tcp(host: &str, port: u16, k: &Keepalives) -> io::Result<Self> {
        let s = TcpStream::connect((host, port)).await?;
        s.set_nodelay(true)?;
        apply_keepalives(&s, k)?;
        Ok(Self::new(Io::Tcp(s)))
    }

    /// Connects to a Unix-domain socket file.
    pub(crate) async fn unix(path: &Path) -> io::Result<Self> {
        Ok(Self::new(Io::Unix(UnixStream::connect(path).await?)))
    }

    /// Bounds how long one read may wait for data (`None`: forever).
    pub(crate) fn set_read_timeout(&mut self, limit: Option<Duration>) {
        self.read_timeout = limit;
    }

    /// Whether TLS is in use.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// The server's leaf certificate, when TLS is in use.
    pub(crate) fn peer_certificate(&self) -> Option<rustls::pki_types::CertificateDer<'static>> {
        match &self.io {
            Io::Tls(t) => {
                t.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned())
            }
            _ => None,
        }
    }

    /// Sends `SSLRequest` and reads the one-byte reply straight from the socket.
    ///
    /// The reply is read as exactly one byte, unbuffered: a server (or a man in the middle) that
    /// sends anything more before the handshake must not get those bytes taken as part of the
    /// TLS session (CVE-2021-23222).
    pub(crate) async fn ssl_request(&mut self) -> Result<SslReply, SslRequestError> {
        let Io::Tcp(tcp) = &mut self.io else {
            return Err(SslRequestError::NotTcp);
        };
        tcp.write_all(&SSL_REQUEST).await.map_err(SslRequestError::Io)?;
        let mut reply = [0u8; 1];
        tcp.read_exact(&mut reply).await.map_err(SslRequestError::Io)?;
        // The reply byte is interpreted by pg-wire's sans-IO parser (fuzzed by the `ssl` target).
        match pg_wire::startup::SslResponse::parse(reply[0]) {
            Ok(pg_wire::startup::SslResponse::Accepted) => {
                // Nothing may follow the `S` before the server's first TLS record, which it only
                // sends after our ClientHello: bytes already waiting now were injected.
                let mut probe = [0u8; 1];
                match tcp.try_read(&mut probe) {
                    Ok(0) => Err(SslRequestError::Io(io::ErrorKind::UnexpectedEof.into())),
                    Ok(_) => Err(SslRequestError::Unexpected(
                        "the server sent data before the TLS handshake began".into(),
                    )),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(SslReply::Accepted),
                    Err(e) => Err(SslRequestError::Io(e)),
                }
            }
            Ok(pg_wire::startup::SslResponse::Refused) => Ok(SslReply::Refused),
            // A pre-7.0 server answers with an ErrorResponse; anything else is not PostgreSQL.
            Err(e) => Err(SslRequestError::Unexpected(e.to_string())),
        }
    }

    /// Runs the TLS handshake over a TCP stream whose `SSLRequest` was accepted.
    pub(crate) async fn upgrade(
        self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<Self> {
        let Io::Tcp(tcp) = self.io else {
            return Err(io::Error::other("TLS can only be started on a TCP connection"));
        };
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        Ok(Self { io: Io::Tls(Box::new(tls)), read_timeout: self.read_timeout, waiting_since: None })
    }

    /// Reads what is available into the spare capacity of `buf`, growing it by at least `want`;
    /// fails with [`io::ErrorKind::TimedOut`] when the read timeout passes with nothing read
    /// (counted from the first of a run of reads dropped before they got data).
    pub(crate) async fn read_into(&mut self, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
        buf.reserve(want);
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        let result = match self.read_timeout {
            None => self.read_buf(buf).await,
            Some(limit) => match tokio::time::timeout_at((since + limit).into(), self.read_buf(buf)).await {
                Ok(result) => result,
                Err(_) => Err(read_timed_out(limit)),
            },
        };
        self.waiting_since = None;
        result
    }
}

/// The error of a read that waited `limit` for nothing.
fn read_timed_out(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no data from the server for {} s (read timeout)", limit.as_secs_f32()),
    )
}

/// Failure of the `SSLRequest` exchange.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SslRequestError {
    #[error("{0}")]
    Io(#[source] io::Error),
    #[error("{0}")]
    Unexpected(String),
    #[error("TLS is only possible over TCP")]
    NotTcp,
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Unix(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    /// A fake peer that answers the SSL request with `reply` (a real server cannot be made to
    /// send these).
    async fn answer(reply: &'static [u8]) -> Result<SslReply, SslRequestError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 8];
            s.read_exact(&mut req).await.unwrap();
            assert_eq!(req, SSL_REQUEST);
            s.write_all(reply).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        });
        let mut stream = Stream::tcp("127.0.0.1", port, &keepalives(true)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let r = stream.ssl_request().await;
        server.await.unwrap();
        r
    }

    fn keepalives(enabled: bool) -> Keepalives {
        Keepalives {
            enabled,
            idle: Some(Duration::from_secs(7)),
            interval: Some(Duration::from_secs(3)),
            count: Some(4),
            tcp_user_timeout: Some(Duration::from_millis(9000)),
        }
    }

    #[tokio::test]
    async fn keepalive_settings_reach_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = Stream::tcp("127.0.0.1", port, &keepalives(true)).await.unwrap();
        let Io::Tcp(tcp) = &stream.io else { panic!("not TCP") };
        let sock = socket2::SockRef::from(tcp);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(sock.tcp_user_timeout().unwrap(), Some(Duration::from_millis(9000)));
        assert!(sock.tcp_nodelay().unwrap());

        // keepalives=0: SO_KEEPALIVE stays off, as libpq leaves it.
        let stream = Stream::tcp("127.0.0.1", port, &keepalives(false)).await.unwrap();
        let Io::Tcp(tcp) = &stream.io else { panic!("not TCP") };
        assert!(!socket2::SockRef::from(tcp).keepalive().unwrap());
        // Unset values keep the system's defaults; keepalives stay on (libpq's default).
        let unset =
            Keepalives { enabled: true, idle: None, interval: None, count: None, tcp_user_timeout: None };
        let stream = Stream::tcp("127.0.0.1", port, &unset).await.unwrap();
        let Io::Tcp(tcp) = &stream.io else { panic!("not TCP") };
        let sock = socket2::SockRef::from(tcp);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_user_timeout().unwrap(), None);
    }

    #[tokio::test]
    async fn a_silent_peer_times_a_read_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"x").await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let mut stream = Stream::tcp("127.0.0.1", port, &keepalives(true)).await.unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(300)));
        let mut buf = BytesMut::new();
        assert_eq!(stream.read_into(&mut buf, 16).await.unwrap(), 1);
        let started = std::time::Instant::now();
        let err = stream.read_into(&mut buf, 16).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(err.to_string(), "no data from the server for 0.3 s (read timeout)");
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        peer.abort();
    }

    #[tokio::test]
    async fn reads_dropped_while_waiting_do_not_restart_the_clock() {
        // A receive loop that wakes up every 100 ms to do something else (a select! with a
        // timer) drops its read each time: the silence still adds up to the timeout.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"x").await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let mut stream = Stream::tcp("127.0.0.1", port, &keepalives(true)).await.unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = BytesMut::new();
        assert_eq!(stream.read_into(&mut buf, 16).await.unwrap(), 1);
        // The caller holds the data for longer than the timeout: that does not count.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let started = std::time::Instant::now();
        let err = loop {
            tokio::select! {
                r = stream.read_into(&mut buf, 16) => break r.unwrap_err(),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            assert!(started.elapsed() < Duration::from_secs(3), "the timeout never fired");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(900), "{elapsed:?}");
        peer.abort();
    }

    #[tokio::test]
    async fn ssl_request_replies() {
        assert_eq!(answer(b"N").await.unwrap(), SslReply::Refused);
        assert_eq!(answer(b"S").await.unwrap(), SslReply::Accepted);
        let err = answer(b"Sinjected").await.unwrap_err().to_string();
        assert_eq!(err, "the server sent data before the TLS handshake began");
        let err = answer(b"X").await.unwrap_err().to_string();
        assert!(err.contains("byte 0x58"), "{err}");
        assert!(answer(b"E").await.unwrap_err().to_string().contains("with an error"));
    }
}
