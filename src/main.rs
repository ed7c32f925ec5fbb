//! The `pulse` binary: parses the flags, sets up logging and runs the server
//! until Ctrl-C or SIGTERM.

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use clap::Parser;
    use pulse::server::{self, shutdown::shutdown_signal, Config};

    let config = Config::parse();
    server::logging::init(config.log_format);
    match server::run(config, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "ssr"))]
fn main() {
    // The browser build has no `main`: `lib.rs::hydrate` is its entry point.
}
