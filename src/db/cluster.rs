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
}

impl ClusterOptions {
    /// Options for a cluster kept under `base_dir`, stopped by its last user.
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        Self {
            base_dir: base_dir.into(),
            keep_running: false,
            extra_settings: Vec::new(),
            // Text settings: reading them cannot fail.
            pg_user: crate::config::EmbeddedConfig::from_env()
                .map_or_else(|_| DEFAULT_PG_USER.into(), |c| c.pg_user),
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
        let bin_dir = find_bin_dir()?;
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
            cluster.initdb()?;
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

/// Finds the folder holding `initdb`, `pg_ctl` and `postgres`: `CORTEX_PG_BIN`, then
/// `PATH`, then `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Result<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(dir) = crate::config::EmbeddedConfig::from_env()?.pg_bin {
        if complete(&dir) {
            return Ok(dir);
        }
        bail!(
            "CORTEX_PG_BIN={} does not hold initdb, pg_ctl and postgres",
            dir.display()
        );
    }
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // Follow symbolic links (Debian's /usr/local/bin/initdb → /usr/lib/postgresql/15/bin).
            if let Ok(real) = dir.join("initdb").canonicalize() {
                if let Some(parent) = real.parent() {
                    candidates.push(parent.to_path_buf());
                }
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    candidates.extend(versioned.into_iter().map(|(_, p)| p));
    candidates.into_iter().find(|d| complete(d)).ok_or_else(|| {
        anyhow!(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH, via \
             `pg_config --bindir` or under /usr/lib/postgresql/*/bin. Install them \
             (Debian/Ubuntu: `apt-get install postgresql`), point CORTEX_PG_BIN at them, \
             or set DATABASE_URL to use an existing server"
        )
    })
}

fn lookup_user(name: &str) -> Result<RunAs> {
    let cname = std::ffi::CString::new(name).context("bad user name")?;
    // SAFETY: getpwnam returns a pointer into static storage or NULL; we copy the ids out at once.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        bail!(
            "running as root, the embedded PostgreSQL needs an unprivileged account to run as; \
             user `{name}` does not exist (create it, set CORTEX_PG_USER, or set DATABASE_URL)"
        );
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(RunAs { uid, gid })
}

/// Whether `run_as` can search (traverse) every folder from `/` down to `dir`.
fn reachable_by(dir: &Path, run_as: RunAs) -> bool {
    let mut current = Some(dir);
    while let Some(path) = current {
        let Ok(meta) = fs::metadata(path) else {
            return false;
        };
        let mode = meta.permissions().mode();
        let bit = if meta.uid() == run_as.uid {
            mode & 0o100
        } else if meta.gid() == run_as.gid {
            mode & 0o010
        } else {
            mode & 0o001
        };
        if bit == 0 {
            return false;
        }
        current = path.parent();
    }
    true
}

/// Creates (when missing) the data folder and returns its real path, relocating it
/// when the unprivileged account cannot reach `base_dir`.
fn prepare_data_dir(base_dir: &Path, run_as: Option<RunAs>) -> Result<PathBuf> {
    let link = base_dir.join("pgdata");
    let data_dir = match run_as {
        Some(user) if !reachable_by(base_dir, user) => {
            let real = relocated_data_dir(base_dir)?;
            match fs::read_link(&link) {
                Ok(target) if target == real => {}
                Ok(_) => {
                    fs::remove_file(&link)?;
                    std::os::unix::fs::symlink(&real, &link)?;
                }
                Err(_) if link.exists() => bail!(
                    "{} exists but user uid {} cannot reach it; move the clone somewhere \
                     traversable, set CORTEX_DATA_DIR, or set DATABASE_URL",
                    link.display(),
                    user.uid
                ),
                Err(_) => std::os::unix::fs::symlink(&real, &link).with_context(|| {
                    format!("cannot link {} to {}", link.display(), real.display())
                })?,
            }
            let parent = real.parent().expect("relocated path has a parent");
            fs::create_dir_all(parent)?;
            std::os::unix::fs::chown(parent, Some(user.uid), Some(user.gid))?;
            fs::set_permissions(parent, fs::Permissions::from_mode(0o700))?;
            real
        }
        _ => link,
    };
    if !data_dir.exists() {
        fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
    }
    if let Some(user) = run_as {
        std::os::unix::fs::chown(&data_dir, Some(user.uid), Some(user.gid))
            .with_context(|| format!("cannot chown {}", data_dir.display()))?;
    }
    fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700))?;
    Ok(data_dir)
}

fn relocated_data_dir(base_dir: &Path) -> Result<PathBuf> {
    let root = Path::new(RELOCATED_ROOT);
    fs::create_dir_all(root).with_context(|| format!("cannot create {RELOCATED_ROOT}"))?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    Ok(root
        .join(short_hash(&base_dir.to_string_lossy()))
        .join("pgdata"))
}

/// The socket goes in the data folder unless its path would be too long for the
/// kernel; then in a short private folder under `/tmp`.
fn choose_socket_dir(data_dir: &Path, run_as: Option<RunAs>) -> Result<PathBuf> {
    let socket = data_dir.join(format!(".s.PGSQL.{SOCKET_PORT}.lock"));
    if socket.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(data_dir.to_path_buf());
    }
    let dir = PathBuf::from(format!(
        "/tmp/cortex-{}",
        short_hash(&data_dir.to_string_lossy())
    ));
    fs::create_dir_all(&dir)?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid))?;
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// A stable 16-hex-digit FNV-1a hash: short names derived from long paths.
fn short_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016x}")
}

/// Percent-encodes everything but unreserved characters and `/` (for URL parts).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hash_is_stable_and_short() {
        assert_eq!(short_hash("/root/cortex"), short_hash("/root/cortex"));
        assert_ne!(short_hash("/root/a"), short_hash("/root/b"));
        assert_eq!(short_hash("x").len(), 16);
    }

    #[test]
    fn percent_encode_keeps_paths_readable() {
        assert_eq!(percent_encode("/var/lib/a b&c"), "/var/lib/a%20b%26c");
    }

    #[test]
    fn long_data_dirs_put_the_socket_elsewhere() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        let dir = choose_socket_dir(&long, None).unwrap();
        assert!(
            dir.to_string_lossy().starts_with("/tmp/cortex-"),
            "{}",
            dir.display()
        );
        let short = PathBuf::from("/tmp/short");
        assert_eq!(choose_socket_dir(&short, None).unwrap(), short);
    }
}
