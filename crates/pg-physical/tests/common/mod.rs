//! Helpers shared by the integration tests of this crate.

use std::process::{Command, Stdio};

/// Runs `cmd` to completion; fails the test with its output unless it succeeded. Returns stdout.
#[allow(dead_code)] // not every test file that includes this module runs commands
pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One physical backup the way every binary runs it: through the `backup-plan` orchestrator,
/// which finishes the sink after success and aborts it on failure. A failure of the physical
/// step comes back as the source's own [`pg_physical::PhysicalError`].
pub(crate) async fn backup<S: record_sink::RecordSink>(
    config: &pg_config::Config,
    options: &pg_physical::BackupOptions,
    run: &pg_physical::RunOptions,
    sink: &mut S,
) -> Result<pg_physical::BackupReport, pg_physical::PhysicalError> {
    use backup_plan::{BackupError, CancellationToken, Plan, StepError};
    let mut plan =
        Plan::physical(config.clone(), options.clone(), run.clone(), false).expect("a physical plan");
    match plan.run(sink, &CancellationToken::new()).await {
        Ok(report) => Ok(report.physical().expect("a physical report").clone()),
        Err(BackupError::Step { error: StepError::Physical(e), .. }) => Err(*e),
        Err(e) => panic!("the orchestrator failed outside the physical step: {e:?}"),
    }
}
