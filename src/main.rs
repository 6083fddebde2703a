//! The `proxpanel` binary: every role and the admin CLI. Wiring lives in the library.

fn main() -> std::process::ExitCode {
    proxpanel::main_entry()
}
