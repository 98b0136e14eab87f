//! The `cortex` binary: a thin wrapper over [`cortex::cli`].

/// mimalloc instead of glibc's malloc: a nested response builds thousands of small
/// values per request, and glibc's allocator took ~30 % of the server's CPU there
/// and let its resident set grow to ~200 MiB under load (bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cortex::cli::run()
}
