//! RFC 3339 UTC timestamps in the form Go's `time.RFC3339Nano` writes them (fraction without
//! trailing zeros, none at all when zero), without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// `time` as RFC 3339 in UTC, e.g. `2026-04-08T12:34:56.5Z` (Go's `RFC3339Nano`). Times before
/// 1970 are written as the epoch (no clock is that wrong).
pub fn rfc3339_utc(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX / 2);
    format_epoch(secs, since.subsec_nanos())
}

/// Unix seconds (may be negative) and nanoseconds as RFC 3339 UTC.
pub(crate) fn format_epoch(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Normalises the server's `YYYY-MM-DDTHH:MI:SS.USZ` (see `sql::ROLES`) to Go's form: trailing
/// zeros of the fraction dropped. `None` for anything not of that shape (e.g. a year beyond
/// 9999, which RFC 3339 cannot express).
pub(crate) fn normalize_server_timestamp(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shape = b.len() == 27
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26)
        && b[26] == b'Z';
    if !shape {
        return None;
    }
    let frac = text[20..26].trim_end_matches('0');
    Some(if frac.is_empty() { format!("{}Z", &text[..19]) } else { format!("{}.{frac}Z", &text[..19]) })
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (the
/// well-known "days from civil" inverse, H. Hinnant's public-domain algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_fuzz_regressions_replay() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/timestamp");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                crate::fuzzing::timestamp(&std::fs::read(&path).unwrap());
                n += 1;
            }
        }
        assert!(n >= 2, "the committed seeds are missing");
    }

    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_like_go_rfc3339nano() {
        assert_eq!(format_epoch(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(format_epoch(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(format_epoch(1_775_651_696, 500_000_000), "2026-04-08T12:34:56.5Z");
        assert_eq!(format_epoch(1_775_651_696, 123_456_789), "2026-04-08T12:34:56.123456789Z");
        assert_eq!(format_epoch(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(format_epoch(253_402_300_799, 0), "9999-12-31T23:59:59Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 1_000);
        assert_eq!(rfc3339_utc(t), "2023-11-14T22:13:20.000001Z");
    }

    #[test]
    fn normalizes_server_timestamps() {
        assert_eq!(
            normalize_server_timestamp("2030-01-02T03:04:05.000000Z").as_deref(),
            Some("2030-01-02T03:04:05Z")
        );
        assert_eq!(
            normalize_server_timestamp("2030-01-02T03:04:05.120000Z").as_deref(),
            Some("2030-01-02T03:04:05.12Z")
        );
        for bad in
            ["", "12345-01-02T03:04:05.000000Z", "2030-01-02 03:04:05+00", "2030-01-02T03:04:05.00000éZ"]
        {
            assert_eq!(normalize_server_timestamp(bad), None, "{bad}");
        }
    }
}
