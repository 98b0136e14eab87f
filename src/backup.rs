//! `cortex backup`, `cortex restore` and `cortex backups`: the seed's
//! `scripts/backup_postgres.py` with PostgreSQL's own tools. A backup is
//! `pg_dump --format=custom` into `DIR/<db>_<YYYYmmdd_HHMMSS>.dump`; a restore is
//! `pg_restore --clean --if-exists --no-owner --no-privileges` in one transaction,
//! so a restore that fails changes nothing. The password travels in `PGPASSWORD`,
//! never on a command line (where `ps` would show it).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

/// One backup file, as `cortex backups` lists it.
#[derive(Debug, Clone)]
pub struct BackupFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// A database as the PostgreSQL tools take it: the URL without its password, the
/// password on its own, and the database's name.
struct Target {
    url: String,
    password: Option<String>,
    database: String,
}

fn target(url: &str) -> Result<Target> {
    let mut parsed = url::Url::parse(url).context("the database URL cannot be parsed")?;
    let password = parsed.password().map(percent_decode).transpose()?;
    parsed
        .set_password(None)
        .map_err(|()| anyhow::anyhow!("the database URL has no host"))?;
    let database = parsed.path().trim_start_matches('/').to_string();
    if database.is_empty() {
        bail!("the database URL names no database");
    }
    Ok(Target {
        url: parsed.to_string(),
        password,
        database: percent_decode(&database)?,
    })
}

fn percent_decode(text: &str) -> Result<String> {
    Ok(percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .context("the database URL is not valid UTF-8")?
        .into_owned())
}

/// The PostgreSQL client tool `name` (`pg_dump`, `pg_restore`) from the same
/// installation as the server binaries.
fn tool(name: &str) -> Result<PathBuf> {
    let dir = crate::db::cluster::find_bin_dir()
        .with_context(|| format!("cannot find {name}: install the PostgreSQL client tools"))?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{name} is not installed in {}: install the PostgreSQL client tools",
            dir.display()
        );
    }
    Ok(path)
}

/// Runs a PostgreSQL tool with the password in its environment; on failure, the
/// error is the tool's own last line (e.g. a server version mismatch).
async fn run_tool(program: &Path, args: Vec<OsString>, target: &Target) -> Result<()> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).env_remove("PGPASSWORD");
    if let Some(password) = &target.password {
        command.env("PGPASSWORD", password);
    }
    let output = command
        .output()
        .await
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        let name = program.file_name().unwrap_or_default().to_string_lossy();
        bail!("{name} failed: {}", reason.trim());
    }
    Ok(())
}

/// Dumps the database at `url` into a new file in `dir` and returns it. A dump
/// that fails leaves nothing behind (it is written under a `.partial` name and
/// renamed when complete).
pub async fn backup(url: &str, dir: &Path) -> Result<BackupFile> {
    let target = target(url)?;
    let pg_dump = tool("pg_dump")?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the backup folder {}", dir.display()))?;
    let stamp = chrono::Local::now().format("%Y%m%d_%H%M%S");
    let mut path = dir.join(format!("{}_{stamp}.dump", target.database));
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = dir.join(format!("{}_{stamp}_{n}.dump", target.database));
    }
    let partial = path.with_extension("dump.partial");
    let args = vec![
        OsString::from("--format=custom"),
        OsString::from("--no-password"),
        OsString::from(format!("--dbname={}", target.url)),
        OsString::from("--file"),
        partial.clone().into_os_string(),
    ];
    if let Err(e) = run_tool(&pg_dump, args, &target).await {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &path)
        .with_context(|| format!("cannot move the backup to {}", path.display()))?;
    let meta = std::fs::metadata(&path)?;
    Ok(BackupFile {
        path,
        size: meta.len(),
        modified: meta.modified()?,
    })
}

/// Replaces the contents of the database at `url` with the backup `file`, in one
/// transaction: on any error nothing changes.
pub async fn restore(url: &str, file: &Path) -> Result<()> {
    let target = target(url)?;
    if !file.is_file() {
        bail!("no backup file at {}", file.display());
    }
    let pg_restore = tool("pg_restore")?;
    let args = vec![
        OsString::from("--clean"),
        OsString::from("--if-exists"),
        OsString::from("--no-owner"),
        OsString::from("--no-privileges"),
        OsString::from("--single-transaction"),
        OsString::from("--no-password"),
        OsString::from(format!("--dbname={}", target.url)),
        file.as_os_str().to_owned(),
    ];
    run_tool(&pg_restore, args, &target).await
}

/// The backups in `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<BackupFile>> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "dump") {
            let meta = entry.metadata()?;
            files.push(BackupFile {
                path,
                size: meta.len(),
                modified: meta.modified()?,
            });
        }
    }
    files.sort_by(|a, b| b.modified.cmp(&a.modified).then(b.path.cmp(&a.path)));
    Ok(files)
}

/// The database name in `url` (what restore asks the operator to confirm).
pub fn database_name(url: &str) -> Result<String> {
    Ok(target(url)?.database)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_taken_out_of_the_url() {
        let t = target("postgresql://app:s%40cret@db.example:5433/cortex?sslmode=require").unwrap();
        assert_eq!(t.password.as_deref(), Some("s@cret"));
        assert!(!t.url.contains("cret"), "{}", t.url);
        assert_eq!(
            t.url,
            "postgresql://app@db.example:5433/cortex?sslmode=require"
        );
        assert_eq!(t.database, "cortex");
    }

    #[test]
    fn a_socket_url_keeps_its_host_parameter() {
        let t = target("postgresql://cortex@localhost:5432/cortex?host=/tmp/pg%20sock").unwrap();
        assert_eq!(t.password, None);
        assert!(t.url.ends_with("?host=/tmp/pg%20sock"), "{}", t.url);
    }

    #[test]
    fn a_url_without_a_database_is_refused() {
        assert!(target("postgresql://app@db.example/").is_err());
    }
}
