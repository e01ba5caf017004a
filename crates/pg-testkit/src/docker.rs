//! The Docker backend (feature `testcontainers`, env `PG_TEST_BACKEND=docker`): the official
//! `postgres:<major>` image through `testcontainers`, configured with the same `pg_hba.conf`,
//! settings, users and TLS files as the local backend. Paths such as `data_dir()` and
//! `socket_dir()` are inside the container; `pid()` is None; `start_existing` always uses the local backend.

use std::time::{Duration, Instant};

use testcontainers::core::{ExecCommand, IntoContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

use crate::cluster::{TestCluster, quote_ident, quote_literal};
use crate::error::{Error, Result};
use crate::options::ClusterOptions;

/// Where the harness's files go inside the container.
const CONF_DIR: &str = "/etc/pg-testkit";
/// The server user of the official image.
const IMAGE_IDS: (u32, u32) = (999, 999);

/// A running container.
pub(crate) struct DockerState {
    container: Container<GenericImage>,
}

fn docker_err(e: impl std::fmt::Display) -> Error {
    Error::Docker(e.to_string())
}

impl DockerState {
    /// Runs SQL through `psql` inside the container, as `postgres` over its Unix socket.
    pub(crate) fn sql(&self, db: &str, query: &str) -> Result<String> {
        let cmd = [
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            query,
        ];
        let (code, out, err) = self.exec(&cmd)?;
        if code != Some(0) {
            return Err(Error::Sql {
                query: query.chars().take(200).collect(),
                status: format!("exit code {code:?}"),
                stderr: err.trim_end().to_owned(),
            });
        }
        Ok(out.trim_end_matches('\n').to_owned())
    }

    /// Runs a command inside the container: (exit code, stdout, stderr).
    pub(crate) fn exec(&self, cmd: &[&str]) -> Result<(Option<i64>, String, String)> {
        let mut result = self.container.exec(ExecCommand::new(cmd.iter().copied())).map_err(docker_err)?;
        let out = String::from_utf8_lossy(&result.stdout_to_vec().map_err(docker_err)?).into_owned();
        let err = String::from_utf8_lossy(&result.stderr_to_vec().map_err(docker_err)?).into_owned();
        Ok((result.exit_code().map_err(docker_err)?, out, err))
    }

    /// The server's output so far.
    pub(crate) fn log(&self) -> String {
        let mut text =
            String::from_utf8_lossy(&self.container.stdout_to_vec().unwrap_or_default()).into_owned();
        text.push_str(&String::from_utf8_lossy(&self.container.stderr_to_vec().unwrap_or_default()));
        text
    }

    /// Creates tablespace `name` in a new directory inside the container.
    pub(crate) fn create_tablespace(&self, name: &str) -> Result<std::path::PathBuf> {
        let dir = format!("/var/lib/postgresql/tblspc/{name}");
        let (code, _, err) =
            self.exec(&["sh", "-c", &format!("mkdir -p '{dir}' && chown postgres: '{dir}'")])?;
        if code != Some(0) {
            return Err(Error::Docker(format!("creating {dir}: {err}")));
        }
        self.sql(
            "postgres",
            &format!("CREATE TABLESPACE {} LOCATION {}", quote_ident(name), quote_literal(&dir)),
        )?;
        Ok(dir.into())
    }
}

/// Starts `postgres:<major>` configured like a local cluster.
pub(crate) fn start(major: u32, options: ClusterOptions) -> Result<TestCluster> {
    let mut cluster = TestCluster::new_docker_shell(major, IMAGE_IDS)?;
    let tls = cluster.generate_tls(&options, crate::procs::server_user_ids().unwrap_or(IMAGE_IDS))?;
    let tls_refs = tls.as_ref().map(|_| {
        (
            format!("{CONF_DIR}/run/server.crt"),
            format!("{CONF_DIR}/run/server.key"),
            format!("{CONF_DIR}/run/ca.crt"),
        )
    });
    let mut conf = options
        .conf_lines(major, tls_refs.as_ref().map(|(c, k, a)| (c.as_str(), k.as_str(), a.as_str())))
        .join("\n");
    conf.push_str(&format!(
        "\nlisten_addresses = '*'\nhba_file = '{CONF_DIR}/pg_hba.conf'\n\
         include_if_exists = '/var/lib/postgresql/data/postgresql.auto.conf'\n"
    ));
    let mut script = format!("set -e; mkdir -p {CONF_DIR}/run; ");
    let mut request = GenericImage::new("postgres", &major.to_string())
        .with_exposed_port(5432.tcp())
        .with_wait_for(WaitFor::message_on_either_std("PostgreSQL init process complete"))
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
        .with_env_var("POSTGRES_INITDB_ARGS", options.initdb_args(major).join(" "))
        .with_copy_to(format!("{CONF_DIR}/postgresql.conf"), conf.into_bytes())
        .with_copy_to(format!("{CONF_DIR}/pg_hba.conf"), options.hba().into_bytes());
    if let Some(files) = &tls {
        for (name, path) in [
            ("ca.crt", &files.ca_cert),
            ("server.crt", &files.server_cert),
            ("server.key", &files.server_key),
        ] {
            request = request.with_copy_to(format!("{CONF_DIR}/in/{name}"), path.clone());
        }
        script.push_str(&format!(
            "cp {CONF_DIR}/in/* {CONF_DIR}/run/; chown -R postgres: {CONF_DIR}/run; \
             chmod 600 {CONF_DIR}/run/server.key; "
        ));
    }
    script.push_str(&format!("exec docker-entrypoint.sh postgres -c config_file={CONF_DIR}/postgresql.conf"));
    let container = request.with_cmd(["sh", "-c", &script]).start().map_err(docker_err)?;
    cluster.set_port(container.get_host_port_ipv4(5432.tcp()).map_err(docker_err)?);
    let state = DockerState { container };
    // The entrypoint's message comes before the final server start: poll until it answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    while state.sql("postgres", "select 1").is_err() {
        if Instant::now() >= deadline {
            return Err(Error::Docker(format!("server did not answer in time:\n{}", state.log())));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.set_docker(state);
    cluster.create_objects(&options)?;
    Ok(cluster)
}
