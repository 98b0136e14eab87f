//! PgBouncer (Debian's `pgbouncer`) in transaction mode in front of a test
//! cluster: what a managed PostgreSQL's pooler does to Cortex's connections.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running `pgbouncer`; stopped when dropped, and by the kernel when the test
/// process ends (the harness keeps one for the whole run).
pub(crate) struct PgBouncer {
    /// Its TCP port on 127.0.0.1.
    pub(crate) port: u16,
    pid: u32,
    dir: PathBuf,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode before the PostgreSQL listening in
    /// `socket_dir` (port 5432), with `pool_size` server connections per
    /// database. `None` when it is not installed, outside CI; in CI (which
    /// installs it) its absence fails the test.
    pub(crate) fn start(socket_dir: &Path, pool_size: u32) -> Option<Self> {
        let binary = super::tools::installed(
            "pgbouncer",
            &["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"],
            "pgbouncer",
        )?;
        let port = super::tools::free_port();
        // Under /tmp: the account PgBouncer runs as must read its files.
        let dir = std::env::temp_dir().join(format!("cortex-pgbouncer-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("users.txt"), "\"cortex\" \"\"\n").unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n\
                 * = host={socket} port=5432 user=cortex\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {users}\n\
                 pool_mode = transaction\n\
                 default_pool_size = {pool_size}\n\
                 max_client_conn = 500\n\
                 server_reset_query =\n\
                 ignore_startup_parameters = extra_float_digits,options\n\
                 log_connections = 0\n\
                 log_disconnections = 0\n",
                socket = socket_dir.display(),
                users = dir.join("users.txt").display(),
            ),
        )
        .unwrap();
        for file in ["users.txt", "pgbouncer.ini"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        let mut command = Command::new(binary);
        command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // PgBouncer refuses to run as root: it runs as PostgreSQL's account,
        // which may also reach the cluster's socket.
        if unsafe { libc::geteuid() } == 0 {
            let (uid, gid) = account(&std::env::var("CORTEX_PG_USER").unwrap_or("postgres".into()));
            command.uid(uid).gid(gid);
        }
        // Ends with the test process, even when it exits without dropping this.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // The kernel ties the child to the thread that spawned it: one that
        // lives as long as the child.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut child = command.spawn().expect("spawn pgbouncer");
            tx.send(child.id()).unwrap();
            let _ = child.wait();
        });
        let pid = rx.recv().unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "pgbouncer did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { port, pid, dir })
    }

    /// The URL of `database` through this PgBouncer.
    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgresql://cortex@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.pid as i32, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The uid and gid of `user`.
fn account(user: &str) -> (u32, u32) {
    let name = std::ffi::CString::new(user).unwrap();
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!entry.is_null(), "no account {user}");
    unsafe { ((*entry).pw_uid, (*entry).pw_gid) }
}
