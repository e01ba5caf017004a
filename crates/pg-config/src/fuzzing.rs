//! Entry points of the `conninfo` and `passfile` fuzz targets (`fuzz/fuzz_targets/`), also
//! replayed by this crate's tests over `fuzz/regressions/<target>/`.

use std::hint::black_box;
use std::io::BufReader;

use crate::passfile::{LineRead, Lookup, escape_passfile_field, match_line, read_bounded_line};
use crate::{Config, Param, Password};

/// `conninfo` target: the input as a libpq connection string (keyword/value or URI). What
/// parses must print back, as keywords and as a URI, to text that parses to the same
/// configuration (round trip through both writers); the redacted forms never show the password.
pub fn conninfo(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cfg = match Config::parse(text) {
        Ok(c) => c,
        Err(e) => {
            black_box(e.to_string());
            return;
        }
    };
    let keywords = cfg.to_keyword_string_exposing_password();
    let again = Config::parse(&keywords).unwrap_or_else(|e| panic!("{keywords:?} does not parse back: {e}"));
    assert!(again == cfg, "keyword round trip changed the configuration: {keywords:?}");
    let uri = cfg.to_uri_exposing_password();
    let again = Config::parse(&uri).unwrap_or_else(|e| panic!("{uri:?} does not parse back: {e}"));
    assert!(again == cfg, "URI round trip changed the configuration: {uri:?}");
    // What is shown does not depend on the passwords: the same with other ones. (A password
    // that is also written in another value, say the database name, does show there: that is
    // the other value, not a leak; the fuzzer found such an input. Whether a password is empty
    // may show: the redacted URI has `:********` only for a non-empty one.)
    let shown = |c: &Config| [c.to_keyword_string_without_password(), c.redacted_uri(), format!("{c:?}")];
    let another = |p: &Password| if p.is_empty() { "" } else { "\u{1}another password" };
    let mut other = cfg.clone();
    if let Some(p) = cfg.password() {
        other.set_password(Password::new(another(p)));
    }
    if let Some(p) = cfg.sslpassword() {
        other.set(Param::SslPassword, another(p)).expect("any sslpassword");
    }
    assert_eq!(shown(&cfg), shown(&other), "what is shown depends on a password");
}

/// `passfile` target. The input is a passfile: its lines are read in pieces whose size comes
/// from byte 0 and must come out the same as read whole (chunk-split equivalence of the
/// bounded line reader); each line is matched against a fixed key. Then the input is cut at NUL
/// bytes into host, port, database, user and password: a line written from them with
/// [`escape_passfile_field`] must match those four and give that password back.
pub fn passfile(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let key = Lookup { host: "localhost", port: "5432", dbname: "db", user: "u" };
    let lines = |cap: usize| {
        let mut r = BufReader::with_capacity(cap, rest);
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            match read_bounded_line(&mut r, &mut line).expect("reading a slice") {
                LineRead::Eof => break,
                LineRead::TooLong => out.push(None),
                LineRead::Line => {
                    assert!(line.len() <= crate::MAX_PASSFILE_LINE && !line.contains(&b'\n'));
                    out.push(Some(line));
                }
            }
        }
        out
    };
    let whole = lines(rest.len().max(1));
    assert_eq!(whole, lines(usize::from(first).max(1)), "line reading depends on the buffer size");
    for line in whole.iter().flatten() {
        black_box(match_line(line, key));
    }

    let parts: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    let [host, port, dbname, user, password] = parts[..] else { return };
    let (Ok(host), Ok(port), Ok(dbname), Ok(user), Ok(password)) = (
        std::str::from_utf8(host),
        std::str::from_utf8(port),
        std::str::from_utf8(dbname),
        std::str::from_utf8(user),
        std::str::from_utf8(password),
    ) else {
        return;
    };
    // A passfile cannot hold a line break, and a line starting with '#' is a comment.
    if [host, port, dbname, user, password].iter().any(|f| f.contains(['\n', '\r'])) || host.starts_with('#')
    {
        return;
    }
    let line = [host, port, dbname, user, password].map(escape_passfile_field).join(":");
    let found = match_line(line.as_bytes(), Lookup { host, port, dbname, user });
    assert_eq!(found.as_deref(), Some(password.as_bytes()), "escaped line {line:?} does not match itself");
}

#[cfg(test)]
mod tests {
    use std::path::Path;

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
    fn conninfo_regressions_replay() {
        assert!(replay("conninfo", super::conninfo) >= 3, "the committed seeds are missing");
    }

    #[test]
    fn passfile_regressions_replay() {
        assert!(replay("passfile", super::passfile) >= 2, "the committed seeds are missing");
    }
}
