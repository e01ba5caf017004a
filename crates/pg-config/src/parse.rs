//! The two connection string syntaxes of libpq-connect.html §34.1.1: keyword/value
//! (`host=localhost port=5432`) and URI (`postgresql://user@host/db?sslmode=require`).
//!
//! Semantics follow `conninfo_parse`, `conninfo_uri_parse_options`,
//! `conninfo_uri_parse_params` and `conninfo_uri_decode` in
//! src/interfaces/libpq/fe-connect.c (PostgreSQL 18), re-implemented here; each step that
//! can fail reports the byte offset where the problem is.

use crate::config::Config;
use crate::error::ConfigError;
use crate::param::is_c_space;

/// The two URI schemes libpq recognises (case-sensitive, as libpq's `strncmp`).
pub(crate) const URI_PREFIXES: [&str; 2] = ["postgresql://", "postgres://"];

/// Length of the URI scheme prefix, or 0 when `s` is not a URI.
pub(crate) fn uri_prefix_len(s: &str) -> usize {
    URI_PREFIXES.iter().find(|p| s.starts_with(*p)).map_or(0, |p| p.len())
}

/// Whether libpq would take `s`, given as a `dbname`, for a whole connection string
/// (`recognized_connection_string`): a URI prefix or any `=`.
pub(crate) fn looks_like_connection_string(s: &str) -> bool {
    uri_prefix_len(s) > 0 || s.contains('=')
}

fn is_space_byte(b: u8) -> bool {
    is_c_space(b as char)
}

/// Bytes to a `String`. Only ASCII bytes (quotes, backslashes, separators) are ever removed
/// from the UTF-8 input, so the result is valid UTF-8; the lossy conversion never alters it.
fn to_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Parses the keyword/value form into `cfg` (later keywords override earlier ones).
pub(crate) fn parse_keyword_value(s: &str, cfg: &mut Config) -> Result<(), ConfigError> {
    let b = s.as_bytes();
    let mut i = 0;
    // When the previous value was a secret, a failure right after it most likely exposes a
    // piece of a badly quoted password: report the position only.
    let mut after_secret: Option<&'static str> = None;
    while i < b.len() {
        if is_space_byte(b[i]) {
            i += 1;
            continue;
        }
        // Keyword: up to '=' or whitespace.
        let kw_start = i;
        let redact = |e: ConfigError| match after_secret {
            Some(keyword) => ConfigError::MalformedAfterSecret { keyword, offset: kw_start },
            None => e,
        };
        while i < b.len() && b[i] != b'=' && !is_space_byte(b[i]) {
            i += 1;
        }
        let keyword = &s[kw_start..i];
        while i < b.len() && is_space_byte(b[i]) {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(redact(ConfigError::MissingEquals { keyword: keyword.to_owned(), offset: kw_start }));
        }
        i += 1;
        while i < b.len() && is_space_byte(b[i]) {
            i += 1;
        }
        // Value: bare (ends at whitespace) or single-quoted; a backslash takes the next byte
        // literally in both. libpq has no `''` doubling: `'it''s'` is an error.
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'\'' {
            let quote_at = i;
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(ConfigError::UnterminatedQuote { offset: quote_at }),
                    Some(b'\\') => {
                        if let Some(&c) = b.get(i + 1) {
                            value.push(c);
                            i += 2;
                        } else {
                            i += 1;
                        }
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !is_space_byte(b[i]) {
                if b[i] == b'\\' {
                    if let Some(&c) = b.get(i + 1) {
                        value.push(c);
                    }
                    i += 2;
                } else {
                    value.push(b[i]);
                    i += 1;
                }
            }
        }
        cfg.store(keyword, to_string(value), false).map_err(redact)?;
        after_secret = match keyword {
            "password" => Some("password"),
            "sslpassword" => Some("sslpassword"),
            _ => None,
        };
    }
    Ok(())
}

/// Percent-decodes one URI part as `conninfo_uri_decode`: `%xx` escapes (never `%00`),
/// leading and trailing spaces ignored, spaces inside refused; the result must be UTF-8.
fn uri_decode(raw: &str, part: &str, offset: usize) -> Result<String, ConfigError> {
    let err = |reason: &'static str| ConfigError::UriDecode { part: part.to_owned(), reason, offset };
    let trimmed = raw.trim_matches(' ');
    let b = trimmed.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(err("invalid percent-encoded token"));
                };
                let byte = (hi * 16 + lo) as u8;
                if byte == 0 {
                    return Err(err("forbidden value %00 in percent-encoded value"));
                }
                out.push(byte);
                i += 3;
            }
            b' ' => return Err(err("unexpected spaces found (use percent-encoded spaces, %20)")),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| err("percent-decoded bytes that are not valid UTF-8"))
}

/// Parses the URI form (`prefix_len` bytes of scheme already recognised) into `cfg`.
pub(crate) fn parse_uri(s: &str, prefix_len: usize, cfg: &mut Config) -> Result<(), ConfigError> {
    let b = s.as_bytes();
    let start = prefix_len;
    let mut p = start;

    // Credentials: present when an '@' comes before any '/'.
    while p < b.len() && b[p] != b'@' && b[p] != b'/' {
        p += 1;
    }
    if p < b.len() && b[p] == b'@' {
        let at = p;
        let user_end = s[start..at].find(':').map_or(at, |c| start + c);
        if user_end > start {
            cfg.store("user", uri_decode(&s[start..user_end], "user", start)?, false)?;
        }
        if user_end < at && user_end + 1 < at {
            // The password: decoding errors name the part, never the value.
            let password = uri_decode(&s[user_end + 1..at], "password", user_end + 1)?;
            cfg.store("password", password, false)?;
        }
        p = at + 1;
    } else {
        p = start;
    }

    // Hosts and ports: netloc[:port][,netloc[:port]...], each list stored as one value.
    let mut hosts = String::new();
    let mut ports = String::new();
    let hosts_at = p;
    let mut terminator;
    loop {
        if b.get(p) == Some(&b'[') {
            let open = p;
            let close =
                s[p..].find(']').map(|c| p + c).ok_or(ConfigError::UriUnterminatedIpv6 { offset: open })?;
            if close == open + 1 {
                return Err(ConfigError::UriEmptyIpv6 { offset: open });
            }
            hosts.push_str(&s[open + 1..close]);
            p = close + 1;
            if let Some(&c) = b.get(p)
                && !matches!(c, b':' | b'/' | b'?' | b',')
            {
                let ch = s[p..].chars().next().unwrap_or('?');
                return Err(ConfigError::UriUnexpectedChar { ch, offset: p });
            }
        } else {
            let h = p;
            while p < b.len() && !matches!(b[p], b':' | b'/' | b'?' | b',') {
                p += 1;
            }
            hosts.push_str(&s[h..p]);
        }
        terminator = b.get(p).copied();
        if terminator == Some(b':') {
            p += 1;
            let port_at = p;
            while p < b.len() && !matches!(b[p], b'/' | b'?' | b',') {
                p += 1;
            }
            ports.push_str(&s[port_at..p]);
            terminator = b.get(p).copied();
        }
        if terminator != Some(b',') {
            break;
        }
        p += 1;
        hosts.push(',');
        ports.push(',');
    }
    if !hosts.is_empty() {
        cfg.store("host", uri_decode(&hosts, "host", hosts_at)?, false)?;
    }
    if !ports.is_empty() {
        cfg.store("port", uri_decode(&ports, "port", hosts_at)?, false)?;
    }

    // Database: after '/', up to '?'. An empty one is not stored (PGDATABASE still applies).
    if terminator == Some(b'/') {
        p += 1;
        let db_at = p;
        while p < b.len() && b[p] != b'?' {
            p += 1;
        }
        if p > db_at {
            cfg.store("dbname", uri_decode(&s[db_at..p], "dbname", db_at)?, false)?;
        }
        terminator = b.get(p).copied();
    }

    if terminator == Some(b'?') {
        parse_uri_params(s, p + 1, cfg)?;
    }
    Ok(())
}

/// `key=value&key=value` after the `?`.
fn parse_uri_params(s: &str, mut p: usize, cfg: &mut Config) -> Result<(), ConfigError> {
    let b = s.as_bytes();
    while p < b.len() {
        let param_at = p;
        let end = s[p..].find('&').map_or(b.len(), |e| p + e);
        let text = &s[param_at..end];
        let Some(eq) = text.find('=') else {
            return Err(ConfigError::UriMissingSeparator { param: text.to_owned(), offset: param_at });
        };
        let (raw_key, raw_value) = (&text[..eq], &text[eq + 1..]);
        if let Some(extra) = raw_value.find('=') {
            return Err(ConfigError::UriExtraSeparator {
                keyword: raw_key.to_owned(),
                offset: param_at + eq + 1 + extra,
            });
        }
        let key = uri_decode(raw_key, "query parameter name", param_at)?;
        let part = format!("query parameter \"{key}\"");
        let value = uri_decode(raw_value, &part, param_at + eq + 1)?;
        // JDBC compatibility, as libpq: ssl=true means sslmode=require.
        if key == "ssl" && value == "true" {
            cfg.store("sslmode", "require".to_owned(), true)?;
        } else {
            cfg.store(&key, value, true)?;
        }
        p = if end < b.len() { end + 1 } else { end };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode() {
        assert_eq!(uri_decode("%2Ftmp", "host", 0).unwrap(), "/tmp");
        assert_eq!(uri_decode("a%40b%3Ac", "password", 0).unwrap(), "a@b:c");
        assert_eq!(uri_decode(" x ", "dbname", 0).unwrap(), "x");
        assert_eq!(uri_decode("%c3%A9", "dbname", 0).unwrap(), "é");
        let e = uri_decode("a b", "dbname", 7).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected spaces found (use percent-encoded spaces, %20) in URI dbname (at byte 7)"
        );
        for bad in ["%", "%2", "%zz", "%2g"] {
            assert!(matches!(uri_decode(bad, "x", 0), Err(ConfigError::UriDecode { .. })), "{bad}");
        }
        assert!(uri_decode("%00", "x", 0).unwrap_err().to_string().contains("%00"));
        assert!(uri_decode("%ff", "x", 0).unwrap_err().to_string().contains("UTF-8"));
    }

    #[test]
    fn connection_string_recognition() {
        assert!(looks_like_connection_string("a=b"));
        assert!(looks_like_connection_string("postgres://"));
        assert!(!looks_like_connection_string("mydb"));
        assert!(!looks_like_connection_string("POSTGRES://x"));
        assert_eq!(uri_prefix_len("postgresql://x"), 13);
        assert_eq!(uri_prefix_len("postgres://x"), 11);
        assert_eq!(uri_prefix_len("postgres:/x"), 0);
    }
}
