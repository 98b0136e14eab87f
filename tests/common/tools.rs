//! What the tests need from the machine: a program Debian installs, a free port.
//! (`bench/scale_out.rs` includes this file too, beside `pooler.rs`.)

use std::path::PathBuf;

/// The first of `paths` that exists: `program`, from Debian's `package`. `None`
/// outside CI when none does (the test is skipped with a notice); under CI,
/// which installs it (`.ci/run`), its absence fails the test.
pub(crate) fn installed(program: &str, paths: &[&str], package: &str) -> Option<PathBuf> {
    if let Some(found) = paths.iter().map(PathBuf::from).find(|p| p.exists()) {
        return Some(found);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is not installed: CI must install {package} (.ci/run does)"
    );
    eprintln!("SKIPPED: {program} is not installed (apt-get install {package})");
    None
}

/// A loopback TCP port free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
