//! Test helper for pg-testkit's orphan-cleanup test: starts a cluster of the major given as the
//! only argument, prints `<postmaster pid> <data dir>` on stdout, then sleeps until killed.

use std::io::Write;

fn main() {
    let major: u32 =
        std::env::args().nth(1).and_then(|a| a.parse().ok()).expect("usage: pg-testkit-hold <major>");
    let cluster = pg_testkit::TestCluster::start(major).expect("starting the cluster");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{} {}", cluster.pid().expect("running"), cluster.data_dir().display()).expect("stdout");
    out.flush().expect("stdout");
    drop(out);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
