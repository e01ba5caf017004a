//! Drives a startup exchange and one command over a blocking `TcpStream`, without TLS: the
//! smallest IO layer around the sans-IO machines (the real one, with tokio and TLS, is
//! `pg-conn`).
//!
//! ```sh
//! PGPASSWORD=secret cargo run -p pg-wire --example handshake -- 127.0.0.1 5432 backup IDENTIFY_SYSTEM
//! ```
//!
//! The connection is a physical replication one when the command is a replication command
//! (upper case, no `SELECT`), a normal one otherwise.

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::BytesMut;
use pg_wire::frame::MAX_MESSAGE_LEN;
use pg_wire::message::frontend;
use pg_wire::query::Collector;
use pg_wire::startup::{ChannelBindingPolicy, Password, Replication, Startup, StartupEvent, StartupParams};
use pg_wire::{Frame, Framer};

fn next_frame(sock: &mut TcpStream, framer: &mut Framer) -> Result<Frame, Box<dyn std::error::Error>> {
    loop {
        if let Some(f) = framer.next_frame()? {
            return Ok(f);
        }
        let mut buf = vec![0; framer.wanted().clamp(5, 64 * 1024)];
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Err(format!("server closed the connection at stream offset {}", framer.offset()).into());
        }
        framer.feed(&buf[..n]);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, host, port, user, command] = &args[..] else {
        return Err("usage: handshake HOST PORT USER COMMAND (password in PGPASSWORD)".into());
    };
    let mut params = StartupParams::new(user.as_str());
    if !command.starts_with("SELECT") {
        params.replication = Replication::Physical;
    }
    params.database = Some("postgres".into());
    let password = std::env::var("PGPASSWORD").ok().map(Password::new);
    let mut startup = Startup::new(params, password, ChannelBindingPolicy::Prefer);
    let mut sock = TcpStream::connect((host.as_str(), port.parse::<u16>()?))?;
    let mut out = BytesMut::new();
    startup.start(&mut out)?;
    let mut framer = Framer::new(startup.frame_limit());
    let mut stdout = std::io::stdout();
    let session = loop {
        sock.write_all(&out)?;
        out.clear();
        let frame = next_frame(&mut sock, &mut framer)?;
        match startup.handle(frame, &mut out) {
            Ok(StartupEvent::Ready(s)) => break s,
            Ok(StartupEvent::Authenticated(m)) => writeln!(stdout, "authenticated with {m:?}")?,
            Ok(_) => {}
            Err(e) => {
                writeln!(stdout, "startup failed: {e} (sqlstate {:?}, {:?})", e.sqlstate(), e.failure())?;
                return Ok(());
            }
        }
    };
    writeln!(
        stdout,
        "server {} (major {:?})",
        session.parameter("server_version").unwrap_or("?"),
        session.server_major()
    )?;
    framer.set_limit(MAX_MESSAGE_LEN);
    frontend::query(command, &mut out)?;
    sock.write_all(&out)?;
    out.clear();
    let mut collector = Collector::new(16 << 20);
    let result = loop {
        if let Some(done) = collector.handle(next_frame(&mut sock, &mut framer)?)? {
            break done;
        }
    };
    for set in &result.sets {
        let names: Vec<&str> = set.description.fields.iter().map(|f| f.name.as_str()).collect();
        writeln!(stdout, "{}", names.join("\t"))?;
        for row in &set.rows {
            let cells: Vec<String> =
                (0..row.len()).map(|i| row.get(i).ok().flatten().unwrap_or("NULL").to_owned()).collect();
            writeln!(stdout, "{}", cells.join("\t"))?;
        }
    }
    if let Some(e) = &result.error {
        writeln!(stdout, "error: {e}")?;
    }
    frontend::terminate(&mut out);
    sock.write_all(&out)?;
    Ok(())
}
