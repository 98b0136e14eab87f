//! The embedded PostgreSQL cluster: Cortex's zero-configuration default.
//!
//! With no database configured, Cortex runs its own cluster from the installed server
//! binaries. The cluster listens only on a Unix socket (no TCP port) and keeps its data
//! under `<base>/pgdata`, so it survives restarts. Every `cortex` process shares it:
//! the first one starts it, the others attach, and the last one to leave stops it.
//! That bookkeeping is two file locks: each user holds a shared lock on
//! `<base>/cluster.lock`, and a process that can take it exclusively on exit knows it
//! is the last one; `<base>/startup.lock` serialises starting and stopping, so a
//! process never attaches to a cluster that is being stopped.
//!
//! `initdb` and `postgres` refuse to run as root, so a root caller runs them as an
//! unprivileged user (`postgres` by default). That user must be able to reach the data
//! folder; when the base folder is not reachable (a clone under `/root`, mode 0700),
//! the data lives under `/var/lib/cortex/<hash>/pgdata` and `<base>/pgdata` is a
//! symbolic link to it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

mod layout;

use layout::{choose_socket_dir, lookup_user, prepare_data_dir};
pub use layout::{find_bin_dir, find_bin_dir_in, percent_encode};

/// Database role that owns the embedded cluster (created by `initdb --username`).
pub const SUPERUSER: &str = "cortex";
/// Port number in the socket's name (`.s.PGSQL.<port>`); no TCP port is opened.
const SOCKET_PORT: u16 = 5432;
/// Longest Unix socket path the kernel accepts (`sun_path` minus the NUL byte).
const MAX_SOCKET_PATH: usize = 107;
/// Unprivileged account a root caller runs PostgreSQL as, unless `CORTEX_PG_USER` says otherwise.
pub const DEFAULT_PG_USER: &str = "postgres";
/// Where the data goes when the requested folder is not reachable by that account.
const RELOCATED_ROOT: &str = "/var/lib/cortex";

/// How to run an embedded cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Folder that holds `pgdata`, the lock file and the server log.
    pub base_dir: PathBuf,
    /// Leave the cluster running when the last user exits (the test harness reuses it).
    pub keep_running: bool,
    /// Extra `postgresql.conf` lines (the test cluster trades durability for speed).
    pub extra_settings: Vec<String>,
    /// Account to run PostgreSQL as when started by root.
    pub pg_user: String,
    /// Folder of the server binaries, when configured (else searched for).
    pub pg_bin: Option<PathBuf>,
    /// A new cluster is a streaming standby of this primary (a libpq connection
    /// string), copied by `pg_basebackup -R`, instead of an empty `initdb`.
    pub standby_of: Option<String>,
}

impl ClusterOptions {
    /// Options for a cluster kept under `base_dir`, stopped by its last user, with
    /// the account and binaries the environment names (tools and tests).
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        // Text settings: reading them cannot fail.
        let embedded = crate::config::EmbeddedConfig::from_env().unwrap_or_else(|_| {
            crate::config::EmbeddedConfig {
                data_dir: PathBuf::new(),
                pg_bin: None,
                pg_user: DEFAULT_PG_USER.into(),
            }
        });
        Self {
            base_dir: base_dir.into(),
            ..Self::from_config(&embedded)
        }
    }

    /// Options for the configured embedded cluster.
    pub fn from_config(config: &crate::config::EmbeddedConfig) -> Self {
        Self {
            base_dir: config.data_dir.clone(),
            keep_running: false,
            extra_settings: Vec::new(),
            pg_user: config.pg_user.clone(),
            pg_bin: config.pg_bin.clone(),
            standby_of: None,
        }
    }
}

/// The unprivileged account PostgreSQL runs as.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// A running embedded cluster that this process uses. Dropping it without [`stop`]
/// releases the lock, so the cluster keeps running for other users.
///
/// [`stop`]: EmbeddedCluster::stop
#[derive(Debug)]
pub struct EmbeddedCluster {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    lock: File,
    startup: File,
    keep_running: bool,
    started_here: bool,
}

impl EmbeddedCluster {
    /// Starts the cluster, or attaches to it when another process already runs it.
    /// Blocking: call it from `spawn_blocking` in async code.
    pub fn start(options: &ClusterOptions) -> Result<Self> {
        let bin_dir = find_bin_dir_in(options.pg_bin.as_deref())?;
        fs::create_dir_all(&options.base_dir).with_context(|| {
            format!(
                "cannot create the data folder {}",
                options.base_dir.display()
            )
        })?;
        let base_dir = options
            .base_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", options.base_dir.display()))?;

        let startup = open_lock(&base_dir.join("startup.lock"))?;
        let lock = open_lock(&base_dir.join("cluster.lock"))?;
        // Exclusive while we inspect and possibly start the cluster.
        startup
            .lock()
            .context("cannot lock the start-up lock file")?;

        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(lookup_user(&options.pg_user)?)
        } else {
            None
        };
        let data_dir = prepare_data_dir(&base_dir, run_as)?;
        let socket_dir = choose_socket_dir(&data_dir, run_as)?;

        let mut cluster = Self {
            data_dir,
            socket_dir,
            bin_dir,
            run_as,
            lock,
            startup,
            keep_running: options.keep_running,
            started_here: false,
        };
        if !cluster.data_dir.join("PG_VERSION").exists() {
            match &options.standby_of {
                Some(primary) => cluster.base_backup(primary)?,
                None => cluster.initdb()?,
            }
        }
        cluster.write_settings(&options.extra_settings)?;
        if cluster.is_running() {
            tracing::info!(data_dir = %cluster.data_dir.display(), "attached to the running embedded PostgreSQL");
        } else {
            cluster.remove_stale_pid_file()?;
            cluster.pg_ctl_start()?;
            cluster.started_here = true;
            tracing::info!(data_dir = %cluster.data_dir.display(), "started the embedded PostgreSQL");
        }
        // From here on we are one of possibly many users.
        cluster
            .lock
            .lock_shared()
            .context("cannot share the cluster lock")?;
        cluster
            .startup
            .unlock()
            .context("cannot release the start-up lock")?;
        Ok(cluster)
    }

    /// Connection URL for `database` over the cluster's Unix socket.
    pub fn database_url(&self, database: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}@localhost:{SOCKET_PORT}/{}?host={}",
            percent_encode(database),
            percent_encode(&self.socket_dir.to_string_lossy())
        )
    }

    /// The folder of the cluster's Unix socket (port 5432 in it).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The folder PostgreSQL keeps its data in (after following any relocation).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether this process started the cluster (rather than attaching to it).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Leaves the cluster: stops it when no other process uses it (and it is not kept
    /// running), otherwise leaves it to them.
    pub fn stop(self) -> Result<()> {
        if self.keep_running {
            return Ok(());
        }
        // No process may attach while we decide; converting our shared lock to an
        // exclusive one succeeds only when nobody else uses the cluster.
        self.startup
            .lock()
            .context("cannot lock the start-up lock file")?;
        let result = match self.lock.try_lock() {
            Ok(()) => self
                .pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"])
                .map(|()| {
                    tracing::info!("stopped the embedded PostgreSQL");
                }),
            Err(_) => {
                tracing::info!("embedded PostgreSQL left running for its other users");
                Ok(())
            }
        };
        let _ = self.startup.unlock();
        result
    }

    /// Whether a postmaster serves this data folder right now.
    pub fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .args(["status", "-D"])
            .arg(&self.data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn initdb(&self) -> Result<()> {
        tracing::info!(data_dir = %self.data_dir.display(), "initialising the embedded PostgreSQL cluster");
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-instructions",
            ])
            .output()
            .context("cannot run initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed for {}: {}",
                self.data_dir.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        // Our settings live in a file of their own, rewritten at every start.
        let mut conf = OpenOptions::new()
            .append(true)
            .open(self.data_dir.join("postgresql.conf"))
            .context("cannot open postgresql.conf")?;
        writeln!(conf, "\ninclude_if_exists = 'cortex.conf'")?;
        Ok(())
    }

    /// Copies `primary` into the (empty) data folder as a standby that streams
    /// from it (`standby.signal` and `primary_conninfo`, written by `-R`).
    fn base_backup(&self, primary: &str) -> Result<()> {
        tracing::info!(data_dir = %self.data_dir.display(), "copying the primary for a standby");
        let output = self
            .command("pg_basebackup")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-R", "-X", "stream", "-c", "fast", "-d", primary])
            .output()
            .context("cannot run pg_basebackup")?;
        if !output.status.success() {
            bail!(
                "pg_basebackup failed for {}: {}",
                self.data_dir.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        // The copy holds the primary's socket lock files when its sockets live in
        // its data folder; they name the primary's running postmaster.
        for entry in fs::read_dir(&self.data_dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".s.PGSQL.") {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    fn write_settings(&self, extra: &[String]) -> Result<()> {
        let mut text =
            String::from("# Written by Cortex at every start; edit postgresql.conf instead.\n");
        text.push_str("listen_addresses = ''\n");
        text.push_str(&format!("port = {SOCKET_PORT}\n"));
        text.push_str(&format!(
            "unix_socket_directories = '{}'\n",
            self.socket_dir.to_string_lossy().replace('\'', "''")
        ));
        text.push_str("unix_socket_permissions = 0700\n");
        text.push_str("shared_preload_libraries = 'pg_stat_statements'\n");
        text.push_str("max_connections = 200\n");
        for line in extra {
            text.push_str(line);
            text.push('\n');
        }
        let path = self.data_dir.join("cortex.conf");
        fs::write(&path, text).context("cannot write cortex.conf")?;
        self.give_to_pg_user(&path)?;
        Ok(())
    }

    /// A `postmaster.pid` left by a crash or `kill -9` names a process that is gone
    /// (or, after a reboot, some unrelated process): remove it so the server can start.
    fn remove_stale_pid_file(&self) -> Result<()> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let Ok(text) = fs::read_to_string(&pid_file) else {
            return Ok(());
        };
        let pid: i32 = text
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .unwrap_or(0);
        let alive_postgres = pid > 0
            && fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmd| String::from_utf8_lossy(&cmd).contains("postgres"))
                .unwrap_or(false);
        if alive_postgres {
            bail!(
                "a PostgreSQL process (pid {pid}) holds {} but does not answer; stop it and retry",
                self.data_dir.display()
            );
        }
        tracing::warn!(
            pid,
            "removing the stale postmaster.pid left by an unclean stop"
        );
        fs::remove_file(&pid_file).context("cannot remove the stale postmaster.pid")?;
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let log = self.data_dir.join("cortex-postgres.log");
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log.to_string_lossy()])
            .with_context(|| {
                let tail = fs::read_to_string(&log)
                    .map(|t| t.lines().rev().take(5).collect::<Vec<_>>().join(" | "))
                    .unwrap_or_default();
                format!("the embedded PostgreSQL did not start (log: {tail})")
            })
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let output = self
            .command("pg_ctl")
            .args(args)
            .arg("-D")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .output()
            .context("cannot run pg_ctl")?;
        if !output.status.success() {
            bail!(
                "pg_ctl {} failed: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// A command for one of the server binaries, run as the cluster's account and in a
    /// process group of its own, so a terminal's Ctrl-C reaches Cortex (which then
    /// finishes its requests) and not PostgreSQL.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.process_group(0);
        cmd.current_dir("/");
        cmd.env_remove("PGDATA");
        if let Some(run_as) = self.run_as {
            cmd.uid(run_as.uid).gid(run_as.gid);
        }
        cmd
    }

    fn give_to_pg_user(&self, path: &Path) -> Result<()> {
        if let Some(run_as) = self.run_as {
            std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid))
                .with_context(|| format!("cannot chown {}", path.display()))?;
        }
        Ok(())
    }
}

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))
}
