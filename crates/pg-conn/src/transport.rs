//! The byte stream under a connection: TCP, Unix socket, or TLS over TCP.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// `SSLRequest`: length 8, code 80877103 (protocol-message-formats.html).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A connected socket, possibly wrapped in TLS.
#[derive(Debug)]
pub(crate) enum Stream {
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

impl Stream {
    /// Connects over TCP, with `TCP_NODELAY` (every message we send is small and awaited).
    pub(crate) async fn tcp(host: &str, port: u16) -> io::Result<Self> {
        let s = TcpStream::connect((host, port)).await?;
        s.set_nodelay(true)?;
        Ok(Self::Tcp(s))
    }

    /// Connects to a Unix-domain socket file.
    pub(crate) async fn unix(path: &Path) -> io::Result<Self> {
        Ok(Self::Unix(UnixStream::connect(path).await?))
    }

    /// Whether TLS is in use.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// The server's leaf certificate, when TLS is in use.
    pub(crate) fn peer_certificate(&self) -> Option<rustls::pki_types::CertificateDer<'static>> {
        match self {
            Self::Tls(t) => {
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
        let Self::Tcp(tcp) = self else {
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
        let Self::Tcp(tcp) = self else {
            return Err(io::Error::other("TLS can only be started on a TCP connection"));
        };
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        Ok(Self::Tls(Box::new(tls)))
    }

    /// Reads what is available into the spare capacity of `buf`, growing it by at least `want`.
    pub(crate) async fn read_into(&mut self, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
        buf.reserve(want);
        self.read_buf(buf).await
    }
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
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Unix(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
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
        let mut stream = Stream::tcp("127.0.0.1", port).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let r = stream.ssl_request().await;
        server.await.unwrap();
        r
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
