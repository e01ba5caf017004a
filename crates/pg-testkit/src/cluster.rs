//! The local backend: clusters copied from a cached `initdb` template on tmpfs, `postgres`
//! spawned directly and watched through `postmaster.pid` (PostgreSQL source
//! `src/include/utils/pidfile.h`: line 8 is the postmaster status, `ready` once it accepts
//! connections).

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result, io};
use crate::options::ClusterOptions;
use crate::paths::{self, server_bin_dir};
use crate::procs::{self, server_user_ids};
use crate::tls::{self, TlsFiles};

/// How long a server may take to become ready (a restored backup replays WAL first).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stopping server may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

static CLUSTER_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The harness's root on tmpfs: env `PG_TESTKIT_ROOT`, else `/dev/shm/pg-testkit` (the temp
/// directory when there is no `/dev/shm`).
pub fn harness_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_TESTKIT_ROOT") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { shm.join("pg-testkit") } else { std::env::temp_dir().join("pg-testkit") }
}

/// Creates `dir` (and parents) traversable by the server user (mode 0755).
fn make_public_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(io(format!("chmod {}", dir.display())))
}

/// Creates a directory owned by the server user with `mode`.
fn make_server_dir(dir: &Path, ids: (u32, u32), mode: u32) -> Result<()> {
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    std::os::unix::fs::chown(dir, Some(ids.0), Some(ids.1))
        .map_err(io(format!("chown {}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io(format!("chmod {}", dir.display())))
}

/// Gives `path` and everything under it (not following symlinks) to `ids`.
fn chown_tree(path: &Path, ids: (u32, u32)) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(ids.0), Some(ids.1))
        .map_err(io(format!("chown {}", path.display())))?;
    let meta = fs::symlink_metadata(path).map_err(io(format!("stat {}", path.display())))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(io(format!("reading {}", path.display())))? {
            chown_tree(&entry.map_err(io(format!("reading {}", path.display())))?.path(), ids)?;
        }
    }
    Ok(())
}

/// Checks that the server user can reach `dir` (every ancestor searchable by it).
fn check_reachable(dir: &Path, ids: (u32, u32)) -> Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else { continue };
        let mode = meta.permissions().mode();
        let ok = mode & 0o001 != 0
            || (std::os::unix::fs::MetadataExt::uid(&meta) == ids.0 && mode & 0o100 != 0)
            || (std::os::unix::fs::MetadataExt::gid(&meta) == ids.1 && mode & 0o010 != 0);
        if !ok {
            return Err(Error::Config(format!(
                "the server user (uid {}) cannot reach {} because {} has mode {:o}: put restored data \
                 under pg_testkit::ScratchDir (or a directory others can traverse)",
                ids.0,
                dir.display(),
                ancestor.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

/// A command that runs as the server user.
fn server_command(program: &Path, ids: (u32, u32)) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().env("PATH", "/usr/bin:/bin").env("LC_ALL", "C.UTF-8");
    if nix::unistd::geteuid().is_root() {
        cmd.uid(ids.0).gid(ids.1);
    }
    cmd
}

/// A free TCP port on 127.0.0.1 (the kernel's choice; released before the server binds it).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("binding 127.0.0.1:0"))?;
    Ok(listener.local_addr().map_err(io("local_addr"))?.port())
}

/// The last `max` bytes of a file, lossily decoded.
fn tail(path: &Path, max: usize) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Quotes an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal (standard_conforming_strings is on in every supported major).
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The initdb template for `major`, `bin_dir` and `args`, creating it when absent; safe
/// against other threads and processes doing the same (built aside, then renamed).
fn template(major: u32, bin_dir: &Path, args: &[String], ids: (u32, u32)) -> Result<PathBuf> {
    let mut hasher = DefaultHasher::new();
    (major, bin_dir, args, ids).hash(&mut hasher);
    let postgres = bin_dir.join("postgres");
    if let Ok(modified) = fs::metadata(&postgres).and_then(|m| m.modified()) {
        modified.hash(&mut hasher);
    }
    let templates = harness_root().join("templates");
    let final_dir = templates.join(format!("pg{major}-{:016x}", hasher.finish()));
    if final_dir.join("data/PG_VERSION").is_file() {
        return Ok(final_dir.join("data"));
    }
    make_public_dir(&templates)?;
    let n = CLUSTER_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag = procs_tag();
    let build = templates.join(format!(".tmp-{tag}-{n}"));
    let _ = fs::remove_dir_all(&build);
    make_public_dir(&build)?;
    let data = build.join("data");
    run_initdb(major, bin_dir, &data, args, ids)?;
    match fs::rename(&build, &final_dir) {
        Ok(()) => {}
        // Another thread or process won the race: use theirs.
        Err(_) if final_dir.join("data/PG_VERSION").is_file() => {
            let _ = fs::remove_dir_all(&build);
        }
        Err(e) => return Err(io(format!("renaming {} to {}", build.display(), final_dir.display()))(e)),
    }
    Ok(final_dir.join("data"))
}

/// `<pid>-<start time>` of this process, for names of directories being built.
fn procs_tag() -> String {
    procs::owner_tag().replace(' ', "-")
}

/// Runs `initdb` into `data` (created owned by the server user).
fn run_initdb(major: u32, bin_dir: &Path, data: &Path, args: &[String], ids: (u32, u32)) -> Result<()> {
    make_server_dir(data, ids, 0o700)?;
    let out = server_command(&bin_dir.join("initdb"), ids)
        .arg("-D")
        .arg(data)
        .args(["-U", "postgres", "-A", "trust", "--no-sync"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("running {}", bin_dir.join("initdb").display())))?;
    if !out.status.success() {
        return Err(Error::Server {
            major,
            dir: data.to_path_buf(),
            message: format!("initdb failed ({})", out.status),
            log: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}

/// Where a new cluster's data directory comes from.
enum Origin {
    /// A copy of the cached `initdb` template.
    Template,
    /// An existing directory (a restored backup).
    Existing(PathBuf),
    /// A base backup of a running primary, made a streaming standby of it.
    StandbyOf { socket_dir: PathBuf, port: u16 },
}

/// A running throwaway PostgreSQL server; stopped and removed on drop (also after a panic, when
/// its log is printed to stderr).
pub struct TestCluster {
    major: u32,
    port: u16,
    dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    log_path: PathBuf,
    ids: (u32, u32),
    tls: Option<TlsFiles>,
    child: Option<Child>,
    remove_data_dir: bool,
    #[cfg(feature = "testcontainers")]
    docker: Option<crate::docker::DockerState>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("major", &self.major)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// Starts a cluster of `major` with default options (trust, no TLS).
    pub fn start(major: u32) -> Result<TestCluster> {
        TestCluster::start_with(major, ClusterOptions::new())
    }

    /// Starts a cluster of `major` with `options`, on the backend chosen by `PG_TEST_BACKEND`
    /// (`local`, the default, or `docker` with the `testcontainers` feature).
    pub fn start_with(major: u32, options: ClusterOptions) -> Result<TestCluster> {
        options.validate()?;
        match crate::Backend::from_env()? {
            crate::Backend::Local => TestCluster::start_local(major, options, Origin::Template),
            #[cfg(feature = "testcontainers")]
            crate::Backend::Docker => crate::docker::start(major, options),
        }
    }

    /// Starts a server of `major` on an existing data directory (e.g. a restored backup): gives
    /// it to the server user with mode 0700, writes the harness's settings into
    /// `postgresql.auto.conf` and its `pg_hba.conf` beside the cluster, starts it on a fresh port
    /// and socket directory. Users and tablespaces of `options` are NOT created. The data
    /// directory is removed on drop unless [`ClusterOptions::keep_data_dir`] is set.
    pub fn start_existing(
        major: u32,
        data_dir: impl AsRef<Path>,
        options: ClusterOptions,
    ) -> Result<TestCluster> {
        options.validate()?;
        let data_dir = data_dir.as_ref();
        let data_dir = fs::canonicalize(data_dir).map_err(io(format!("resolving {}", data_dir.display())))?;
        if !data_dir.join("PG_VERSION").is_file() {
            return Err(Error::Config(format!("{} is not a PostgreSQL data directory", data_dir.display())));
        }
        TestCluster::start_local(major, options, Origin::Existing(data_dir))
    }

    /// Starts a streaming hot standby of `primary` (local backend): a `pg_basebackup -X stream
    /// -R` of it (`standby.signal`, `primary_conninfo` over the primary's socket) into this
    /// cluster's own directory, then started like [`TestCluster::start_existing`] with
    /// `options`; returns once the standby accepts connections (`pg_is_in_recovery()` is true
    /// until it is promoted, e.g. with `select pg_promote()`). The primary must not be
    /// restarted meanwhile (a restart changes its port). Users and tablespaces of `options` are
    /// not created: the standby has the primary's.
    pub fn start_standby(primary: &TestCluster, options: ClusterOptions) -> Result<TestCluster> {
        options.validate()?;
        let origin = Origin::StandbyOf { socket_dir: primary.socket_dir.clone(), port: primary.port };
        TestCluster::start_local(primary.major, options, origin)
    }

    fn start_local(major: u32, options: ClusterOptions, origin: Origin) -> Result<TestCluster> {
        let existing = match &origin {
            Origin::Existing(dir) => Some(dir.clone()),
            Origin::Template | Origin::StandbyOf { .. } => None,
        };
        let root = harness_root();
        let clusters = root.join("clusters");
        make_public_dir(&clusters)?;
        // Cheap (a directory listing): done at every start so that a test binary whose threads
        // already started clusters still reaps what a killed run left behind meanwhile.
        procs::reap_stale(&clusters, &root.join("templates"), &root.join("scratch"));
        let bin_dir = server_bin_dir(major, options.server_source)?;
        let ids = server_user_ids()?;

        let n = CLUSTER_COUNTER.fetch_add(1, Ordering::Relaxed);
        // PID *and* start time: a new process that reuses the PID of a killed run must not
        // collide with that run's stale directory while another thread reaps it.
        let dir = clusters.join(format!("c{}-{n}", procs_tag()));
        let _ = fs::remove_dir_all(&dir);
        make_public_dir(&dir)?;
        // The owner file comes first: a directory with it can always be reaped.
        procs::write_owner(&dir).map_err(io(format!("writing {}/owner", dir.display())))?;
        let data_dir = existing.clone().unwrap_or_else(|| dir.join("data"));
        fs::write(dir.join("data_dir"), data_dir.as_os_str().as_encoded_bytes())
            .map_err(io(format!("writing {}/data_dir", dir.display())))?;
        let remove_data_dir = existing.is_none() || !options.keep_data_dir;
        if existing.is_some() && remove_data_dir {
            fs::write(dir.join("remove_data_dir"), b"").map_err(io(format!("writing {}", dir.display())))?;
        }
        let socket_dir = dir.join("s");
        make_server_dir(&socket_dir, ids, 0o755)?;

        let mut cluster = TestCluster {
            major,
            port: 0,
            log_path: dir.join("server.log"),
            dir,
            data_dir,
            socket_dir,
            bin_dir,
            ids,
            tls: None,
            child: None,
            remove_data_dir,
            #[cfg(feature = "testcontainers")]
            docker: None,
        };
        // From here on, Drop cleans up whatever fails.
        if let Origin::StandbyOf { socket_dir, port } = &origin {
            cluster.base_backup_of(socket_dir, *port)?;
        }
        cluster.prepare(&options, !matches!(origin, Origin::Template))?;
        cluster.spawn()?;
        if matches!(origin, Origin::Template) {
            cluster.create_objects(&options)?;
        }
        Ok(cluster)
    }

    /// Fills the (absent) data directory with a `pg_basebackup -X stream -R` of the server at
    /// `socket_dir`/`port`, of this cluster's major (14's client for 12 and 13, which have no
    /// tool set here).
    fn base_backup_of(&mut self, socket_dir: &Path, port: u16) -> Result<()> {
        let tool = paths::client_bin_for_major("pg_basebackup", self.major.max(14))?;
        let out = Command::new(&tool)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .args(["--no-sync", "-c", "fast", "-X", "stream", "-R", "-D"])
            .arg(&self.data_dir)
            .arg("-h")
            .arg(socket_dir)
            .args(["-p", &port.to_string(), "-U", "postgres"])
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!("running {}", tool.display())))?;
        if !out.status.success() {
            return Err(self.server_error(&format!(
                "pg_basebackup of the primary for a standby failed: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            )));
        }
        Ok(())
    }

    /// Lays out the data directory, TLS files and configuration.
    fn prepare(&mut self, options: &ClusterOptions, existing: bool) -> Result<()> {
        let ids = self.ids;
        if existing {
            check_reachable(&self.data_dir, ids)?;
            chown_tree(&self.data_dir, ids)?;
            // Tablespaces of a restored backup live behind pg_tblspc symlinks.
            if let Ok(links) = fs::read_dir(self.data_dir.join("pg_tblspc")) {
                for link in links.flatten() {
                    if let Ok(target) = fs::canonicalize(link.path()) {
                        chown_tree(&target, ids)?;
                    }
                }
            }
            fs::set_permissions(&self.data_dir, fs::Permissions::from_mode(0o700))
                .map_err(io(format!("chmod {}", self.data_dir.display())))?;
            // A stale pid file from the backup's source would only confuse the readiness check.
            let _ = fs::remove_file(self.data_dir.join("postmaster.pid"));
        } else if options.fresh_initdb {
            run_initdb(self.major, &self.bin_dir, &self.data_dir, &options.initdb_args(self.major), ids)?;
        } else {
            let template = template(self.major, &self.bin_dir, &options.initdb_args(self.major), ids)?;
            let out = Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(&self.data_dir)
                .output()
                .map_err(io("running cp -a"))?;
            if !out.status.success() {
                return Err(Error::Io {
                    what: format!("cp -a {} {}", template.display(), self.data_dir.display()),
                    error: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
                });
            }
        }

        self.generate_tls(options, ids)?;
        let tls_paths = self.tls.as_ref().map(|t| {
            (
                t.server_cert.to_string_lossy().into_owned(),
                t.server_key.to_string_lossy().into_owned(),
                t.ca_cert.to_string_lossy().into_owned(),
            )
        });
        let tls_refs = tls_paths.as_ref().map(|(c, k, a)| (c.as_str(), k.as_str(), a.as_str()));
        let mut conf = options.conf_lines(self.major, tls_refs).join("\n");
        conf.insert_str(0, "\n# Added by pg-testkit.\n");
        conf.push('\n');
        let hba = options.hba();
        let (conf_file, hba_file) = if existing {
            let hba_file = self.dir.join("pg_hba.conf");
            conf.push_str(&format!("hba_file = {}\n", quote_literal(&hba_file.to_string_lossy())));
            (self.data_dir.join("postgresql.auto.conf"), hba_file)
        } else {
            (self.data_dir.join("postgresql.conf"), self.data_dir.join("pg_hba.conf"))
        };
        let mut file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&conf_file)
            .map_err(io(format!("opening {}", conf_file.display())))?;
        std::io::Write::write_all(&mut file, conf.as_bytes())
            .map_err(io(format!("writing {}", conf_file.display())))?;
        fs::write(&hba_file, hba).map_err(io(format!("writing {}", hba_file.display())))?;
        for path in [&conf_file, &hba_file] {
            std::os::unix::fs::chown(path, Some(ids.0), Some(ids.1))
                .map_err(io(format!("chown {}", path.display())))?;
        }
        Ok(())
    }

    /// Generates the TLS files when `options` ask for TLS (key owned by `key_owner`).
    pub(crate) fn generate_tls(
        &mut self,
        options: &ClusterOptions,
        key_owner: (u32, u32),
    ) -> Result<Option<TlsFiles>> {
        if options.tls.enabled() {
            let mut names: Vec<&str> = options.users.iter().map(|u| u.name.as_str()).collect();
            names.push("postgres");
            self.tls = Some(tls::generate(&self.dir.join("tls"), &names, key_owner)?);
        }
        Ok(self.tls.clone())
    }

    /// A cluster record for the Docker backend: a local directory for TLS files, paths inside
    /// the container.
    #[cfg(feature = "testcontainers")]
    pub(crate) fn new_docker_shell(major: u32, ids: (u32, u32)) -> Result<TestCluster> {
        let clusters = harness_root().join("clusters");
        make_public_dir(&clusters)?;
        let n = CLUSTER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = clusters.join(format!("d{}-{n}", std::process::id()));
        make_public_dir(&dir)?;
        procs::write_owner(&dir).map_err(io(format!("writing {}/owner", dir.display())))?;
        Ok(TestCluster {
            major,
            port: 0,
            log_path: dir.join("server.log"),
            dir,
            data_dir: PathBuf::from("/var/lib/postgresql/data"),
            socket_dir: PathBuf::from("/var/run/postgresql"),
            bin_dir: PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
            ids,
            tls: None,
            child: None,
            remove_data_dir: false,
            docker: None,
        })
    }

    /// Attaches the running container.
    #[cfg(feature = "testcontainers")]
    pub(crate) fn set_docker(&mut self, state: crate::docker::DockerState) {
        self.docker = Some(state);
    }

    /// Sets the TCP port (Docker backend: the mapped port).
    #[cfg(feature = "testcontainers")]
    pub(crate) fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    /// Spawns `postgres` and waits for `ready`; retries on another port if the chosen one was
    /// taken in the meantime.
    fn spawn(&mut self) -> Result<()> {
        for _attempt in 0..5 {
            self.port = free_port()?;
            let log = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&self.log_path)
                .map_err(io(format!("opening {}", self.log_path.display())))?;
            let log_len = log.metadata().map(|m| m.len()).unwrap_or(0);
            let stderr = log.try_clone().map_err(io("dup log file"))?;
            let child = server_command(&self.bin_dir.join("postgres"), self.ids)
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-c")
                .arg("listen_addresses=127.0.0.1")
                .arg("-c")
                .arg(format!("port={}", self.port))
                .arg("-c")
                .arg(format!("unix_socket_directories={}", self.socket_dir.display()))
                .current_dir(&self.data_dir)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(stderr)
                .spawn()
                .map_err(io(format!("spawning {}", self.bin_dir.join("postgres").display())))?;
            let pid = child.id() as i32;
            self.child = Some(child);
            match self.wait_ready(pid) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let output = fs::read(&self.log_path).unwrap_or_default();
                    let output =
                        String::from_utf8_lossy(&output[(log_len as usize).min(output.len())..]).into_owned();
                    if output.contains("could not bind") || output.contains("Address already in use") {
                        self.child = None;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Err(self.server_error("no free port after 5 attempts"))
    }

    fn wait_ready(&mut self, pid: i32) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let pid_file = self.data_dir.join("postmaster.pid");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(self.server_error(&format!("postgres exited during startup ({status})")));
            }
            if let Ok(text) = fs::read_to_string(&pid_file) {
                let lines: Vec<&str> = text.lines().collect();
                if lines.first().map(|l| l.trim()) == Some(pid.to_string().as_str())
                    && matches!(lines.get(7).map(|l| l.trim()), Some("ready" | "standby"))
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.stop_with(Signal::SIGQUIT);
                return Err(self.server_error("postgres did not become ready in time"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn server_error(&self, message: &str) -> Error {
        Error::Server {
            major: self.major,
            dir: self.data_dir.clone(),
            message: message.to_owned(),
            log: tail(&self.log_path, 8000),
        }
    }

    /// Creates the users and tablespaces of `options`.
    pub(crate) fn create_objects(&mut self, options: &ClusterOptions) -> Result<()> {
        // Passwords must not reach the server log either (a failing statement is logged whole).
        let mut script = format!(
            "SET log_statement = 'none';\nSET log_min_error_statement = panic;\n\
             SET password_encryption = {};\n",
            quote_literal(options.password_encryption())
        );
        for user in &options.users {
            let mut attrs = vec![if user.login { "LOGIN" } else { "NOLOGIN" }];
            if user.superuser {
                attrs.push("SUPERUSER");
            }
            if user.replication {
                attrs.push("REPLICATION");
            }
            let password = user
                .password
                .as_deref()
                .map(|p| format!(" PASSWORD {}", quote_literal(p)))
                .unwrap_or_default();
            script.push_str(&format!(
                "CREATE ROLE {} {}{password};\n",
                quote_ident(&user.name),
                attrs.join(" ")
            ));
        }
        if !options.users.is_empty() {
            self.sql(&script).map_err(|e| match e {
                Error::Sql { status, stderr, .. } => Error::Sql {
                    query: "CREATE ROLE … (statements not shown: they hold passwords)".into(),
                    status,
                    stderr,
                },
                other => other,
            })?;
        }
        for name in &options.tablespaces {
            self.create_tablespace(name)?;
        }
        Ok(())
    }

    /// Creates tablespace `name` in a new directory owned by the server user; returns the directory.
    pub fn create_tablespace(&self, name: &str) -> Result<PathBuf> {
        #[cfg(feature = "testcontainers")]
        if let Some(docker) = &self.docker {
            return docker.create_tablespace(name);
        }
        let dir = self.dir.join("tblspc").join(name);
        make_public_dir(&self.dir.join("tblspc"))?;
        make_server_dir(&dir, self.ids, 0o700)?;
        self.sql(&format!(
            "CREATE TABLESPACE {} LOCATION {}",
            quote_ident(name),
            quote_literal(&dir.to_string_lossy())
        ))?;
        Ok(dir)
    }

    /// Runs SQL in database `postgres` as the bootstrap superuser over the Unix socket; returns
    /// psql's unaligned, tuples-only output (rows on lines, columns separated by `|`).
    pub fn sql(&self, query: &str) -> Result<String> {
        self.sql_db("postgres", query)
    }

    /// Runs SQL in database `db` (see [`TestCluster::sql`]).
    pub fn sql_db(&self, db: &str, query: &str) -> Result<String> {
        #[cfg(feature = "testcontainers")]
        if let Some(docker) = &self.docker {
            return docker.sql(db, query);
        }
        let psql = paths::client_bin("psql")?;
        let mut child = Command::new(&psql)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("spawning {}", psql.display())))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let text = query.to_owned();
        // Write from another thread so a large result cannot deadlock against our reads.
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, text.as_bytes()));
        let out = child.wait_with_output().map_err(io(format!("waiting for {}", psql.display())))?;
        let _ = writer.join();
        if !out.status.success() {
            let mut short: String = query.chars().take(200).collect();
            if short.len() < query.len() {
                short.push('…');
            }
            return Err(Error::Sql {
                query: short,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
            });
        }
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        while text.ends_with('\n') {
            text.pop();
        }
        Ok(text)
    }

    /// The PostgreSQL major version.
    pub fn major(&self) -> u32 {
        self.major
    }
    /// The TCP port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The TCP host: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }
    /// The private Unix socket directory (the socket is `.s.PGSQL.<port>` in it).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }
    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// The directory of the running `postgres` and `initdb`.
    pub fn server_bin_dir(&self) -> &Path {
        &self.bin_dir
    }
    /// The newest installed client tool `name` (e.g. `pg_dump`, `pgbench`, `psql`).
    pub fn client_bin(&self, name: &str) -> Result<PathBuf> {
        paths::client_bin(name)
    }
    /// Tool `name` of this cluster's major (e.g. `pg_verifybackup`).
    pub fn client_bin_for_major(&self, name: &str) -> Result<PathBuf> {
        paths::client_bin_for_major(name, self.major)
    }
    /// The generated CA certificate (None without TLS).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_cert.as_path())
    }
    /// The server certificate (None without TLS).
    pub fn server_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.server_cert.as_path())
    }
    /// `(certificate, key)` of the client certificate for `user` (CN = `user`; generated for every
    /// configured user and `postgres`); None without TLS or for an unknown user.
    pub fn client_cert_paths(&self, user: &str) -> Option<(PathBuf, PathBuf)> {
        let (cert, key) = self.tls.as_ref()?.client(user);
        cert.is_file().then_some((cert, key))
    }
    /// A `postgresql://` URL for TCP (password percent-encoded; keep it out of logs).
    pub fn url(&self, user: &str, password: Option<&str>) -> String {
        let auth = match password {
            Some(p) => format!("{}:{}", percent_encode(user), percent_encode(p)),
            None => percent_encode(user),
        };
        format!("postgresql://{auth}@{}:{}/postgres", self.host(), self.port)
    }
    /// A libpq keyword connection string for TCP without password (pass it via `PGPASSWORD`).
    pub fn conninfo(&self, user: &str) -> String {
        format!("host={} port={} user={} dbname=postgres", self.host(), self.port, conninfo_quote(user))
    }
    /// A libpq keyword connection string for the Unix socket.
    pub fn conninfo_socket(&self, user: &str) -> String {
        format!(
            "host={} port={} user={} dbname=postgres",
            conninfo_quote(&self.socket_dir.to_string_lossy()),
            self.port,
            conninfo_quote(user)
        )
    }
    /// Everything the server has written to its stderr so far.
    pub fn log_contents(&self) -> String {
        #[cfg(feature = "testcontainers")]
        if let Some(docker) = &self.docker {
            return docker.log();
        }
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }
    /// The postmaster's PID (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    /// The (uid, gid) the server runs as.
    pub fn server_user_ids(&self) -> (u32, u32) {
        self.ids
    }
    /// The cluster's own directory (socket, log, TLS files, tablespaces; data unless existing).
    pub fn cluster_dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server with a fast shutdown (SIGINT: a clean checkpoint) and waits for it; the
    /// files stay until drop. Stopping twice is harmless.
    pub fn stop(&mut self) -> Result<()> {
        self.stop_with(Signal::SIGINT);
        Ok(())
    }

    /// Stops the server with an immediate shutdown (SIGQUIT: no checkpoint, crash recovery on
    /// the next start) and waits for it.
    pub fn stop_immediate(&mut self) {
        self.stop_with(Signal::SIGQUIT);
    }

    /// Starts the stopped server again on the same data directory (a new port).
    pub fn restart(&mut self) -> Result<()> {
        self.stop_with(Signal::SIGINT);
        self.spawn()
    }

    fn stop_with(&mut self, signal: Signal) {
        let Some(mut child) = self.child.take() else { return };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, signal);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test harness shows stderr of failing tests: the server log explains most failures.
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "--- pg-testkit: PostgreSQL {} log ({}) ---\n{}--- end of log ---",
                    self.major,
                    self.log_path.display(),
                    self.log_contents()
                );
            }
        }
        self.stop_with(Signal::SIGQUIT);
        // The Docker backend: dropping the container stops and removes it.
        #[cfg(feature = "testcontainers")]
        drop(self.docker.take());
        if self.remove_data_dir {
            let _ = fs::remove_dir_all(&self.data_dir);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn conninfo_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A scratch directory under the harness root that the server user can reach (for restored
/// backups and tablespace targets); removed on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a new empty scratch directory (mode 0755).
    pub fn new() -> Result<ScratchDir> {
        let n = CLUSTER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let parent = harness_root().join("scratch");
        make_public_dir(&parent)?;
        let path = parent.join(format!("{}-{n}", procs_tag()));
        let _ = fs::remove_dir_all(&path);
        make_public_dir(&path)?;
        Ok(ScratchDir { path })
    }
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
        assert_eq!(conninfo_quote("a'b\\c"), "'a\\'b\\\\c'");
    }

    #[test]
    fn unreachable_dir_is_reported() {
        let base = std::env::temp_dir().join(format!("pg-testkit-reach-{}", std::process::id()));
        let inner = base.join("x/data");
        fs::create_dir_all(&inner).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        // A uid/gid that owns nothing here.
        let err = check_reachable(&inner, (54321, 54321)).unwrap_err().to_string();
        assert!(err.contains("cannot reach"), "{err}");
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check_reachable(&inner, (54321, 54321)).is_ok());
        fs::remove_dir_all(&base).unwrap();
    }
}
