//! The `cortex` binary: a thin wrapper over [`cortex::cli`].

/// jemalloc instead of glibc's malloc: a nested response builds thousands of small
/// values per request, and glibc's allocator took ~30 % of the server's CPU there and
/// let its resident set grow to ~200 MiB under load. With mimalloc, tried first, the
/// server spent ~20 % more CPU per nested request and kept ~100 MiB resident (huge
/// pages it did not give back); jemalloc peaks near 60 MiB (bench/RESULTS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cortex::cli::run()
}
