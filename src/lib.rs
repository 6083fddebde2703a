//! Wiring of the `proxpanel` binary: command line, configuration, start-up of the roles, admin CLI.

mod admin;
mod api_peers;
mod cert_cmd;
mod cli;
mod commands;
mod context;
mod demo;
mod dev_load;
mod dev_sim;
mod dns_cmd;
mod dns_role;
pub mod https;
mod import;
mod output;
mod peer_cmd;
pub mod ports;
mod radius_role;
mod relay_role;
mod serve;

pub use cli::Cli;
pub use demo::{DemoCredentials, seed_demo};

use std::process::ExitCode;

/// Exit code for bad input (the message says what was wrong).
pub const EXIT_USAGE: u8 = 2;

/// An error that ends the process: a user error (exit 2) or a failure (exit 1).
#[derive(Debug)]
pub struct Fatal {
    /// One-line reason.
    pub message: String,
    /// Whether the user's input is at fault.
    pub user_error: bool,
}

impl Fatal {
    /// A failure of ours or of the environment.
    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            user_error: false,
        }
    }
    /// Bad input.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            user_error: true,
        }
    }
}

impl From<saas_core::platform::PlatformError> for Fatal {
    fn from(e: saas_core::platform::PlatformError) -> Self {
        Self {
            user_error: e.is_user_error(),
            message: e.to_string(),
        }
    }
}

impl From<saas_core::StoreError> for Fatal {
    fn from(e: saas_core::StoreError) -> Self {
        saas_core::platform::PlatformError::from(e).into()
    }
}

impl From<saas_core::config::ConfigError> for Fatal {
    fn from(e: saas_core::config::ConfigError) -> Self {
        Self::usage(e.to_string())
    }
}

/// Parses the command line, runs the command, and maps errors to an exit code with one line on
/// stderr.
pub fn main_entry() -> ExitCode {
    saas_core::tls::install_crypto_provider();
    let cli = <Cli as clap::Parser>::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            if f.user_error {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
