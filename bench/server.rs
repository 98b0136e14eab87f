//! The release `cortex serve` a benchmark drives, shared by `api` and
//! `subscriptions` (`mod server;` in each).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// A running server; stopped (SIGTERM, then waited for) when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Starts the release `cortex serve` on `url` with `secret` on a free port, quiet,
/// with `envs` besides; returns once it listens.
pub(crate) fn start_server(url: &str, secret: &str, envs: &[(&str, String)]) -> Result<Server> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cortex"));
    command
        .arg("serve")
        .env("DATABASE_URL", url)
        .env("JWT_SECRET", secret)
        .env("PORT", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().context("start cortex")?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().context("cortex exited before listening")??;
        if let Some(url) = line.strip_prefix("Cortex is listening on ") {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Server { child, base })
}

/// A memory figure of process `pid` (`field`: `VmRSS:`, `VmHWM:`), MiB.
pub(crate) fn rss_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
