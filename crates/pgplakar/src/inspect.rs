//! `pgplakar inspect`: a recording (`pgplakar record`, `backup --record`) message by message —
//! who sent it, when, its type and what it says — for people debugging a server or this tool.
//! Framing is pg-wire's [`Framer`]; the recording format is pg-recording's.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bytes::Bytes;
use pg_recording::{Direction, RecordingReader};
use pg_wire::frame::{Framer, MAX_MESSAGE_LEN};
use serde_json::{Value, json};

use crate::exit;

/// Options of `pgplakar inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// The recording.
    recording: PathBuf,
    /// One JSON object per line (the first describes the recording, the last sums it up).
    #[arg(long)]
    json: bool,
    /// Leave out the messages that carry archive data (they are still counted).
    #[arg(long)]
    skip_data: bool,
    /// Stop after this many messages.
    #[arg(long)]
    limit: Option<u64>,
}

pub(crate) fn run(args: InspectArgs) -> Result<u8> {
    let file = std::fs::File::open(&args.recording)
        .with_context(|| format!("cannot open {}", args.recording.display()))?;
    let mut reader = RecordingReader::new(std::io::BufReader::new(file))
        .with_context(|| format!("{} is not a recording", args.recording.display()))?;
    let meta = reader.meta().clone();
    let modern = meta.server_major >= 15;
    let head = json!({
        "recording": args.recording, "server_major": meta.server_major, "server_version": meta.server_version,
        "command": meta.command, "manifest": meta.manifest, "compression": meta.compression.option_value(),
    });
    if args.json {
        println!("{head}");
    } else {
        println!(
            "recording of PostgreSQL {} ({}): {}",
            meta.server_version,
            meta.compression.option_value(),
            meta.command
        );
    }
    let mut server = Framer::new(MAX_MESSAGE_LEN);
    let mut client = Framer::new(MAX_MESSAGE_LEN);
    let mut seq = 0u64;
    let (mut messages, mut data_messages, mut data_bytes) = (0u64, 0u64, 0u64);
    'records: while let Some(record) = reader.next_record().context("reading the recording")? {
        let ms = record.nanos as f64 / 1e6;
        let (framer, dir) = match record.direction {
            Direction::Mark => {
                let label = String::from_utf8_lossy(&record.data).into_owned();
                if args.json {
                    println!("{}", json!({"seq": seq, "t_ms": ms, "dir": "mark", "label": label}));
                } else {
                    println!("{ms:>10.3} ms  -- mark: {label}");
                }
                continue;
            }
            Direction::Server => (&mut server, "server"),
            Direction::Client => (&mut client, "client"),
        };
        framer.feed(&record.data);
        loop {
            let frame = match framer.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    anyhow::bail!("{dir} bytes at offset {}: {e}", framer.offset());
                }
            };
            seq += 1;
            messages += 1;
            let (name, detail, is_data) = describe(frame.tag, &frame.body, dir == "server", modern);
            if is_data {
                data_messages += 1;
                data_bytes += frame.body.len() as u64;
                if args.skip_data {
                    continue;
                }
            }
            if args.json {
                println!(
                    "{}",
                    json!({"seq": seq, "t_ms": ms, "dir": dir, "tag": char::from(frame.tag).to_string(),
                           "type": name, "len": frame.body.len() + 4, "detail": detail})
                );
            } else {
                let arrow = if dir == "server" { "<-" } else { "->" };
                println!("{ms:>10.3} ms  {arrow} {name} ({} bytes){}", frame.body.len() + 4, human(&detail));
            }
            if args.limit.is_some_and(|l| seq >= l) {
                break 'records;
            }
        }
    }
    let tail = json!({"summary": {"messages": messages, "archive_data_messages": data_messages,
                                  "archive_data_bytes": data_bytes}});
    if args.json {
        println!("{tail}");
    } else {
        println!("{messages} messages, {data_messages} carrying {data_bytes} bytes of archive data");
    }
    Ok(exit::OK)
}

fn human(detail: &Value) -> String {
    match detail {
        Value::Null => String::new(),
        Value::Object(m) if m.is_empty() => String::new(),
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    v => format!("{k}={v}"),
                })
                .collect();
            format!(": {}", parts.join(" "))
        }
        v => format!(": {v}"),
    }
}

fn cstr(b: &[u8]) -> (String, &[u8]) {
    match b.iter().position(|&c| c == 0) {
        Some(i) => (String::from_utf8_lossy(&b[..i]).into_owned(), &b[i + 1..]),
        None => (String::from_utf8_lossy(b).into_owned(), &[]),
    }
}

fn be_u16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

fn be_i64(b: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// Fields of an ErrorResponse or NoticeResponse: S(everity), C(ode), M(essage).
fn fields(mut b: &[u8]) -> Value {
    let mut out = serde_json::Map::new();
    while let Some((&code, rest)) = b.split_first() {
        if code == 0 {
            break;
        }
        let (text, rest) = cstr(rest);
        let key = match code {
            b'S' => "severity",
            b'C' => "code",
            b'M' => "message",
            b'D' => "detail",
            b'H' => "hint",
            _ => {
                b = rest;
                continue;
            }
        };
        out.insert(key.into(), Value::String(text));
        b = rest;
    }
    Value::Object(out)
}

/// A message's name, what it says, and whether it carries archive data.
fn describe(tag: u8, body: &Bytes, from_server: bool, modern: bool) -> (&'static str, Value, bool) {
    let b = &body[..];
    if !from_server {
        return match tag {
            b'Q' => ("Query", json!({"sql": cstr(b).0}), false),
            b'd' => ("CopyData", json!({"bytes": b.len()}), false),
            b'c' => ("CopyDone", Value::Null, false),
            b'f' => ("CopyFail", json!({"message": cstr(b).0}), false),
            b'X' => ("Terminate", Value::Null, false),
            b'p' => ("PasswordMessage", json!({"bytes": b.len()}), false),
            _ => ("(client message)", json!({"tag": tag}), false),
        };
    }
    match tag {
        b'R' => ("Authentication", Value::Null, false),
        b'S' => {
            let (name, rest) = cstr(b);
            ("ParameterStatus", json!({"name": name, "value": cstr(rest).0}), false)
        }
        b'K' => ("BackendKeyData", Value::Null, false),
        b'Z' => ("ReadyForQuery", json!({"status": b.first().map(|&c| char::from(c).to_string())}), false),
        b'T' => ("RowDescription", json!({"columns": be_u16(b)}), false),
        b'D' => {
            let n = be_u16(b).unwrap_or(0);
            let mut values = Vec::new();
            let mut rest = b.get(2..).unwrap_or_default();
            for _ in 0..n {
                let Some(len) = rest.get(..4).and_then(|l| l.try_into().ok()).map(i32::from_be_bytes) else {
                    break;
                };
                rest = &rest[4..];
                if len < 0 {
                    values.push(Value::Null);
                    continue;
                }
                let len = (len as usize).min(rest.len());
                let text = String::from_utf8_lossy(&rest[..len]);
                let shown: String = text.chars().take(80).collect();
                values.push(Value::String(shown));
                rest = &rest[len..];
            }
            ("DataRow", json!({"values": values}), false)
        }
        b'C' => ("CommandComplete", json!({"tag": cstr(b).0}), false),
        b'H' => ("CopyOutResponse", json!({"columns": b.get(1..).and_then(be_u16)}), false),
        b'G' => ("CopyInResponse", Value::Null, false),
        b'W' => ("CopyBothResponse", Value::Null, false),
        b'c' => ("CopyDone", Value::Null, false),
        b'E' => ("ErrorResponse", fields(b), false),
        b'N' => ("NoticeResponse", fields(b), false),
        b'I' => ("EmptyQueryResponse", Value::Null, false),
        b'd' if modern => match b.split_first() {
            Some((b'n', rest)) => {
                let (name, rest) = cstr(rest);
                let (location, _) = cstr(rest);
                ("CopyData: new archive", json!({"archive": name, "location": location}), false)
            }
            Some((b'd', rest)) => ("CopyData: archive data", json!({"bytes": rest.len()}), true),
            Some((b'p', rest)) => ("CopyData: progress", json!({"bytes_done": be_i64(rest)}), false),
            Some((b'm', _)) => ("CopyData: manifest follows", Value::Null, false),
            Some((t, rest)) => {
                ("CopyData", json!({"kind": char::from(*t).to_string(), "bytes": rest.len()}), false)
            }
            None => ("CopyData", json!({"bytes": 0}), false),
        },
        b'd' => ("CopyData", json!({"bytes": b.len()}), true),
        _ => ("(server message)", json!({"tag": char::from(tag).to_string()}), false),
    }
}
