//! The `proxpanel` binary: every role and the admin CLI. Wiring lives in the library.

/// mimalloc instead of glibc malloc: the RADIUS and API hot paths allocate small, short-lived
/// buffers from many threads, where glibc's arenas cost about 15% of the CPU (perf, accounting).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    proxpanel::main_entry()
}
