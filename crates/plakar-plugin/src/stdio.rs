//! Stdout hygiene and the HTTP/2 connection over stdin/stdout.
//!
//! Plakar talks to the plugin through two anonymous pipes: stdin (host → plugin) and stdout
//! (plugin → host), carrying one cleartext HTTP/2 connection. A single stray byte on stdout
//! corrupts it (`GoAway(FRAME_SIZE_ERROR)` on the host), so [`guard_stdout`] must run first
//! thing in `main`: it duplicates the real stdout for gRPC and points fd 1 at stderr, after which
//! any `print!` (ours, a library's, a child's that inherited fd 1) lands on stderr.
//!
//! [`serve_connection`] serves tonic routes on that one connection with hyper's
//! `http2::Builder::serve_connection`, which returns when the host closes the pipes (tonic's own
//! server would drop the connection after the first accept, or never notice the end). Nothing
//! here ever sends GOAWAY while the host may still call: the host cannot re-dial.

use std::convert::Infallible;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::ServiceExt;

/// Moves the process's real stdout aside and points fd 1 at stderr.
///
/// Returns the duplicated stdout: the only way left to write to the host. Call it before
/// anything can write to stdout (first line of `main`, before logging or threads start).
pub fn guard_stdout() -> std::io::Result<OwnedFd> {
    let out = nix::unistd::dup(std::io::stdout().as_fd())?;
    nix::unistd::dup2_stdout(std::io::stderr().as_fd())?;
    Ok(out)
}

/// The plugin's end of the connection: reads stdin, writes the guarded stdout.
pub struct StdioTransport {
    reader: Reader,
    writer: Writer,
}

enum Reader {
    Pipe(tokio::net::unix::pipe::Receiver),
    Other(tokio::fs::File),
}

enum Writer {
    Pipe(tokio::net::unix::pipe::Sender),
    Other(tokio::fs::File),
}

impl StdioTransport {
    /// Builds the transport over stdin and `out` (the fd returned by [`guard_stdout`]).
    ///
    /// Pipes (Plakar's case) are driven by epoll; other file types (a file, `/dev/null`, a
    /// terminal in manual runs) fall back to plain file I/O.
    pub fn new(out: OwnedFd) -> std::io::Result<Self> {
        let input = nix::unistd::dup(std::io::stdin().as_fd())?;
        grow_pipe(&input, "stdin");
        grow_pipe(&out, "stdout");
        let reader = match tokio::net::unix::pipe::Receiver::from_owned_fd(input.try_clone()?) {
            Ok(r) => Reader::Pipe(r),
            Err(_) => Reader::Other(tokio::fs::File::from_std(std::fs::File::from(input))),
        };
        let writer = match tokio::net::unix::pipe::Sender::from_owned_fd(out.try_clone()?) {
            Ok(w) => Writer::Pipe(w),
            Err(_) => Writer::Other(tokio::fs::File::from_std(std::fs::File::from(out))),
        };
        Ok(Self { reader, writer })
    }
}

/// The pipe capacity asked for: 1 MiB, Linux's default `/proc/sys/fs/pipe-max-size`, so a
/// 1 MiB gRPC chunk crosses in one write instead of sixteen 64 KiB rounds of wake-ups.
const PIPE_SIZE: i32 = 1 << 20;

/// Best effort: grows the pipe behind `fd` to [`PIPE_SIZE`]. Not a pipe, an older kernel or a
/// lower `pipe-max-size` leave it as it is (the connection works either way, only slower).
fn grow_pipe(fd: &OwnedFd, name: &str) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    match nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE)) {
        Ok(size) => tracing::debug!(pipe = name, size, "pipe capacity"),
        Err(e) => tracing::debug!(pipe = name, error = %e, "pipe capacity left as it is"),
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (fd, name, PIPE_SIZE);
}

impl AsyncRead for StdioTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().reader {
            Reader::Pipe(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Other(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for StdioTransport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().writer {
            Writer::Pipe(w) => Pin::new(w).poll_write(cx, buf),
            Writer::Other(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    // Forwarded so hyper writes frame headers and 1 MiB bodies with one `writev` instead of
    // copying every body into its own buffer first.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().writer {
            Writer::Pipe(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Writer::Other(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.writer {
            Writer::Pipe(w) => w.is_write_vectored(),
            Writer::Other(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().writer {
            Writer::Pipe(w) => Pin::new(w).poll_flush(cx),
            Writer::Other(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().writer {
            Writer::Pipe(w) => Pin::new(w).poll_shutdown(cx),
            Writer::Other(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// Serves `routes` on one HTTP/2 connection over `io` until the peer closes it.
///
/// Receive windows are fixed and large (see below); there is no keepalive, no idle timeout and
/// no maximum connection age, so the server never ends the connection itself.
/// Returns `Ok` when the host closes the pipes (the usual end of a plugin's life).
pub async fn serve_connection<IO>(io: IO, routes: tonic::service::Routes) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = routes
        .prepare()
        .map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(tonic::body::Body::new))
        .map_err(|e: Infallible| match e {});
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        // Fixed, large receive windows rather than adaptive ones: h2 (0.4.20) closes the
        // connection with ENHANCE_YOUR_CALM ("detected excessive load generating behavior") once
        // the small DATA frames it holds unread exceed half the connection window. The host's
        // acknowledgements are such frames, one per record: with a 64 KiB window, a plugin that
        // fell ~300 acknowledgements behind under load lost the connection and the backup.
        // 16 MiB leaves room for ~80 000; the host's 1 MiB chunks on Export flow freely too.
        .initial_connection_window_size(16 << 20)
        .initial_stream_window_size(4 << 20)
        .max_frame_size(1 << 20)
        .max_send_buf_size(2 << 20)
        .max_concurrent_streams(1024);
    builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc)).await
}
