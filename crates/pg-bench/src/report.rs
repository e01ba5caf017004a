//! Samples, medians, the printed table and the JSON results.

use std::fmt::Write;

use serde::Serialize;

/// One measured operation of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Op {
    /// Ours into a `NullSink`: network + decode + manifest verification, no disk.
    OursNull,
    /// `pg_basebackup -D - -Ft -X fetch -c fast > /dev/null`.
    PgBasebackupTar,
    /// Ours into a `DirSink`, with its final sync.
    OursDir,
    /// `pg_basebackup -D <dir> -Fp -X fetch -c fast` (with its default fsync).
    PgBasebackupDir,
}

impl Op {
    /// The order of the operations in every round.
    pub(crate) const ROUND: [Op; 4] = [Op::OursNull, Op::PgBasebackupTar, Op::OursDir, Op::PgBasebackupDir];

    /// The label in the table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Op::OursNull => "ours -> NullSink (no disk)",
            Op::PgBasebackupTar => "pg_basebackup -Ft -D - > /dev/null",
            Op::OursDir => "ours -> DirSink (sync)",
            Op::PgBasebackupDir => "pg_basebackup -Fp -D dir (fsync)",
        }
    }

    /// The stock operation an operation of ours is compared with.
    pub(crate) fn baseline(self) -> Option<Op> {
        match self {
            Op::OursNull => Some(Op::PgBasebackupTar),
            Op::OursDir => Some(Op::PgBasebackupDir),
            Op::PgBasebackupTar | Op::PgBasebackupDir => None,
        }
    }
}

/// One measurement.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Sample {
    /// The operation.
    pub(crate) op: Op,
    /// Round number, from 1.
    pub(crate) round: u32,
    /// Wall time of the client process, seconds.
    pub(crate) wall_s: f64,
    /// Bytes of backed-up file content the rate is computed from.
    pub(crate) bytes: u64,
    /// `bytes / wall_s` in MB/s (10^6 bytes).
    pub(crate) mb_per_s: f64,
    /// Peak RSS of the client process in KiB.
    pub(crate) max_rss_kib: u64,
    /// User CPU of the client, seconds.
    pub(crate) user_s: f64,
    /// System CPU of the client, seconds.
    pub(crate) sys_s: f64,
}

impl Sample {
    /// A sample from raw figures.
    pub(crate) fn new(op: Op, round: u32, measured: &crate::measure::Measured, bytes: u64) -> Self {
        let wall_s = measured.wall_ns as f64 / 1e9;
        Sample {
            op,
            round,
            wall_s,
            bytes,
            mb_per_s: if wall_s > 0.0 { bytes as f64 / 1e6 / wall_s } else { 0.0 },
            max_rss_kib: measured.max_rss_kib,
            user_s: measured.user_ns as f64 / 1e9,
            sys_s: measured.sys_ns as f64 / 1e9,
        }
    }
}

/// Medians of one operation over the rounds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct OpSummary {
    /// The operation.
    pub(crate) op: Op,
    /// Its label.
    pub(crate) label: &'static str,
    /// Rounds measured.
    pub(crate) rounds: usize,
    /// Median MB/s.
    pub(crate) median_mb_per_s: f64,
    /// Median wall time, seconds.
    pub(crate) median_wall_s: f64,
    /// Median of ours / median of the pg_basebackup baseline (ours only).
    pub(crate) ratio_vs_pg_basebackup: Option<f64>,
    /// Highest peak RSS over the rounds, KiB.
    pub(crate) peak_rss_kib: u64,
    /// Median user + system CPU, seconds.
    pub(crate) median_cpu_s: f64,
}

/// The median (mean of the middle two for an even count); None when empty.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

/// Per-operation medians, in [`Op::ROUND`] order, operations without samples left out.
pub(crate) fn summarize(samples: &[Sample]) -> Vec<OpSummary> {
    let of = |op: Op| samples.iter().filter(move |s| s.op == op);
    let median_rate = |op: Op| median(&of(op).map(|s| s.mb_per_s).collect::<Vec<_>>());
    Op::ROUND
        .iter()
        .filter_map(|&op| {
            let rate = median_rate(op)?;
            let ratio = op.baseline().and_then(median_rate).filter(|b| *b > 0.0).map(|b| rate / b);
            Some(OpSummary {
                op,
                label: op.label(),
                rounds: of(op).count(),
                median_mb_per_s: rate,
                median_wall_s: median(&of(op).map(|s| s.wall_s).collect::<Vec<_>>()).unwrap_or(0.0),
                ratio_vs_pg_basebackup: ratio,
                peak_rss_kib: of(op).map(|s| s.max_rss_kib).max().unwrap_or(0),
                median_cpu_s: median(&of(op).map(|s| s.user_s + s.sys_s).collect::<Vec<_>>()).unwrap_or(0.0),
            })
        })
        .collect()
}

/// The results table as text.
pub(crate) fn render_table(summaries: &[OpSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36} {:>11} {:>10} {:>9} {:>13} {:>10}",
        "operation", "median MB/s", "ours/pg_bb", "wall s", "peak RSS MiB", "CPU s"
    );
    for s in summaries {
        let ratio = s.ratio_vs_pg_basebackup.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        let _ = writeln!(
            out,
            "{:<36} {:>11.0} {:>10} {:>9.2} {:>13.1} {:>10.2}",
            s.label,
            s.median_mb_per_s,
            ratio,
            s.median_wall_s,
            s.peak_rss_kib as f64 / 1024.0,
            s.median_cpu_s
        );
    }
    out
}

/// A progress line on stderr.
#[expect(clippy::print_stderr, reason = "an interactive benchmark reports its progress on stderr")]
pub(crate) fn progress(message: &str) {
    eprintln!("{message}");
}

/// Prints the table on stdout.
#[expect(clippy::print_stdout, reason = "the table is this benchmark binary's output")]
pub(crate) fn print_table(table: &str) {
    print!("{table}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Measured;

    fn sample(op: Op, round: u32, wall_s: f64, bytes: u64, rss: u64) -> Sample {
        let m = Measured {
            wall_ns: (wall_s * 1e9) as u64,
            max_rss_kib: rss,
            user_ns: 1_000_000_000,
            sys_ns: 500_000_000,
            exit: Some(0),
        };
        Sample::new(op, round, &m, bytes)
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn sample_rate_is_decimal_megabytes_per_second() {
        let s = sample(Op::OursNull, 1, 2.0, 1_000_000_000, 10);
        assert!((s.mb_per_s - 500.0).abs() < 1e-6, "{}", s.mb_per_s);
        assert!((s.user_s - 1.0).abs() < 1e-9 && (s.sys_s - 0.5).abs() < 1e-9);
    }

    #[test]
    fn summary_takes_medians_ratios_and_peak_rss() {
        let samples = vec![
            sample(Op::OursNull, 1, 1.0, 600_000_000, 9000),
            sample(Op::PgBasebackupTar, 1, 2.0, 600_000_000, 8000),
            sample(Op::OursNull, 2, 2.0, 600_000_000, 9500),
            sample(Op::PgBasebackupTar, 2, 2.0, 600_000_000, 8100),
            sample(Op::OursNull, 3, 1.5, 600_000_000, 9100),
            sample(Op::PgBasebackupTar, 3, 3.0, 600_000_000, 8200),
        ];
        let summary = summarize(&samples);
        assert_eq!(summary.len(), 2, "operations without samples are left out");
        let ours = &summary[0];
        assert_eq!(ours.op, Op::OursNull);
        assert_eq!(ours.rounds, 3);
        assert!((ours.median_mb_per_s - 400.0).abs() < 1e-6, "{}", ours.median_mb_per_s);
        assert_eq!(ours.peak_rss_kib, 9500);
        assert!((ours.ratio_vs_pg_basebackup.unwrap() - 400.0 / 300.0).abs() < 1e-9);
        assert_eq!(summary[1].ratio_vs_pg_basebackup, None);
        assert!((summary[1].median_cpu_s - 1.5).abs() < 1e-9);
    }

    #[test]
    fn table_has_one_line_per_operation_and_the_ratio() {
        let samples = vec![
            sample(Op::OursDir, 1, 1.0, 300_000_000, 2048),
            sample(Op::PgBasebackupDir, 1, 1.0, 600_000_000, 1024),
        ];
        let table = render_table(&summarize(&samples));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].starts_with("ours -> DirSink (sync)") && lines[1].contains(" 0.50 "), "{table}");
        assert!(lines[1].contains("2.0"), "peak RSS in MiB: {table}");
        assert!(lines[2].starts_with("pg_basebackup -Fp") && lines[2].contains(" - "), "{table}");
    }
}
