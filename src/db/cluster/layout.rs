//! Where an embedded cluster lives: the server binaries, the account it runs as,
//! the data folder that account can reach, and a socket path short enough.

use super::*;

/// Finds the folder holding `initdb`, `pg_ctl` and `postgres`: `CORTEX_PG_BIN`, then
/// `PATH`, then `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Result<PathBuf> {
    find_bin_dir_in(crate::config::EmbeddedConfig::from_env()?.pg_bin.as_deref())
}

/// [`find_bin_dir`], with `CORTEX_PG_BIN` already read (`configured`).
pub fn find_bin_dir_in(configured: Option<&Path>) -> Result<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(dir) = configured {
        let dir = dir.to_path_buf();
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

pub(super) fn lookup_user(name: &str) -> Result<RunAs> {
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
pub(super) fn prepare_data_dir(base_dir: &Path, run_as: Option<RunAs>) -> Result<PathBuf> {
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
pub(super) fn choose_socket_dir(data_dir: &Path, run_as: Option<RunAs>) -> Result<PathBuf> {
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
