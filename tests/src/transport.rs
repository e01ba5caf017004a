//! Spawning a plugin and speaking HTTP/2 over its stdin/stdout, as Plakar does (§3, §14.A).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tonic::transport::{Channel, Endpoint};

/// What to spawn the plugin with.
#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    /// The working directory (also sent as `Options.cwd`).
    pub cwd: Option<PathBuf>,
    /// Extra environment variables (the host's environment is inherited, as Plakar does).
    pub env: Vec<(String, String)>,
}

/// A running plugin process and the one HTTP/2 connection to it.
pub struct Plugin {
    child: Child,
    channel: Channel,
    stdin: SharedStdin,
    frames: Arc<Mutex<FrameCheck>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_task: tokio::task::JoinHandle<()>,
    /// The plugin's process id.
    pub pid: u32,
}

impl Plugin {
    /// Spawns `exe` with no arguments, stdin and stdout piped, stderr captured, and connects.
    pub async fn spawn(exe: &Path, options: &SpawnOptions) -> std::io::Result<Self> {
        let mut cmd = Command::new(exe);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        if let Some(cwd) = &options.cwd {
            cmd.current_dir(cwd);
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let stdin = SharedStdin(Arc::new(Mutex::new(child.stdin.take())));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let stderr_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stderr_pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut s = sink.lock().unwrap();
                        // Keep the last 64 MiB at most.
                        if s.len() > 64 << 20 {
                            let cut = s.len() - (32 << 20);
                            s.drain(..cut);
                        }
                        s.extend_from_slice(&buf[..n]);
                    }
                }
            }
        });
        let frames = Arc::new(Mutex::new(FrameCheck::default()));
        let io = Arc::new(Mutex::new(Some(Duplex {
            read: CheckedStdout { inner: stdout, check: Arc::clone(&frames) },
            write: stdin.clone(),
        })));
        // A connector that hands out the pipes once and refuses any re-dial: Plakar's dialer
        // always returns the same (then dead) connection.
        let channel = Endpoint::from_static("http://127.0.0.1:0")
            .http2_adaptive_window(true)
            .connect_with_connector(tower::service_fn(move |_uri| {
                let io = io.lock().unwrap().take();
                async move {
                    io.map(TokioIo::new)
                        .ok_or_else(|| std::io::Error::other("the plugin connection cannot be re-dialled"))
                }
            }))
            .await
            .map_err(std::io::Error::other)?;
        Ok(Self { child, channel, stdin, frames, stderr, stderr_task, pid })
    }

    /// The gRPC channel (one HTTP/2 connection).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Everything the plugin wrote to stderr so far (lossy UTF-8).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The first non-HTTP/2 byte sequence seen on the plugin's stdout, if any.
    pub fn stdout_violation(&self) -> Option<String> {
        self.frames.lock().unwrap().error.clone()
    }

    /// Bytes and frames the plugin wrote to stdout.
    pub fn stdout_frames(&self) -> (u64, u64) {
        let f = self.frames.lock().unwrap();
        (f.bytes, f.frames)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Ends the plugin as Plakar does when it exits normally: closes the pipes (the plugin sees
    /// EOF on stdin) and waits for the exit status, at most `timeout`.
    pub async fn close_stdin_and_wait(mut self, timeout: Duration) -> Result<(ExitStatus, String), String> {
        self.stdin.close();
        drop(self.channel);
        let status = tokio::time::timeout(timeout, self.child.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.stderr_task).await;
        let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        match status {
            Ok(Ok(s)) => Ok((s, stderr)),
            Ok(Err(e)) => Err(format!("waiting for the plugin: {e}")),
            Err(_) => {
                let _ = self.child.start_kill();
                Err(format!("the plugin did not exit within {timeout:?} of stdin EOF\n{stderr}"))
            }
        }
    }

    /// Ends the plugin as Plakar's cancelled context does: SIGKILL.
    pub async fn kill(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.stderr_task).await;
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

/// The plugin's stdin, closable while the HTTP/2 connection still holds it.
#[derive(Clone)]
struct SharedStdin(Arc<Mutex<Option<ChildStdin>>>);

impl SharedStdin {
    fn close(&self) {
        self.0.lock().unwrap().take();
    }
}

struct Duplex {
    read: CheckedStdout,
    write: SharedStdin,
}

impl AsyncRead for Duplex {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let mut g = self.write.0.lock().unwrap();
        match g.as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut g = self.write.0.lock().unwrap();
        match g.as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut g = self.write.0.lock().unwrap();
        match g.as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The plugin's stdout, with every byte checked to be part of an HTTP/2 frame.
struct CheckedStdout {
    inner: ChildStdout,
    check: Arc<Mutex<FrameCheck>>,
}

impl AsyncRead for CheckedStdout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            this.check.lock().unwrap().feed(&buf.filled()[before..]);
        }
        r
    }
}

/// Walks the server side of an HTTP/2 connection: a sequence of frames (9-byte header, payload),
/// the first one SETTINGS on stream 0. Anything else is a stray write.
#[derive(Default, Debug)]
struct FrameCheck {
    header: Vec<u8>,
    skip: usize,
    bytes: u64,
    frames: u64,
    error: Option<String>,
}

impl FrameCheck {
    fn feed(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        while !data.is_empty() && self.error.is_none() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let need = 9 - self.header.len();
            let n = need.min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == 9 {
                let h = std::mem::take(&mut self.header);
                let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                let kind = h[3];
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                if self.frames == 0 && (kind != 4 || stream != 0) {
                    self.error = Some(format!(
                        "stdout does not start with an HTTP/2 SETTINGS frame: {:?}",
                        String::from_utf8_lossy(&h)
                    ));
                } else if kind > 9 {
                    self.error = Some(format!(
                        "non-HTTP/2 bytes on stdout after {} frames: {:?}",
                        self.frames,
                        String::from_utf8_lossy(&h)
                    ));
                } else if len > 1 << 20 {
                    self.error = Some(format!("an HTTP/2 frame of {len} bytes (stray bytes on stdout?)"));
                }
                self.frames += 1;
                self.skip = len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FrameCheck;

    #[test]
    fn frame_check_accepts_frames_and_catches_stray_text() {
        let settings = [0u8, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        let mut ok = FrameCheck::default();
        for b in settings.iter().chain(&[0u8, 0, 0, 4, 1, 0, 0, 0, 0]) {
            ok.feed(std::slice::from_ref(b));
        }
        assert_eq!(ok.error, None);
        assert_eq!(ok.frames, 2);
        let mut bad = FrameCheck::default();
        bad.feed(&settings);
        bad.feed(b"hello, world\n");
        assert!(bad.error.is_some());
        let mut first = FrameCheck::default();
        first.feed(b"starting up\n");
        assert!(first.error.is_some());
    }
}
