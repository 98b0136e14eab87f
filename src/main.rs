//! The `cortex` binary: a thin wrapper over [`cortex::cli`].

fn main() -> std::process::ExitCode {
    cortex::cli::run()
}
