//! The `switchboard-edge` binary: parse and validate configuration, set up logging, bind, run.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use switchboard_edge::config::LogFormat;
use switchboard_edge::{Config, Listeners, run, shutdown};
use tracing::error;
use tracing_subscriber::EnvFilter;

/// sysexits' EX_USAGE: the configuration is invalid.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Err(e) = config.validate() {
        eprintln!("switchboard-edge: {e}");
        return ExitCode::from(EX_USAGE);
    }
    let filter = match EnvFilter::try_new(&config.log) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!(
                "switchboard-edge: invalid configuration: --log {:?}: {e}",
                config.log
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    // Colours only for a person at a terminal; files and log collectors get plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let listeners = match Listeners::bind(&config) {
        Ok(listeners) => listeners,
        Err(e) => {
            error!(error = %e, "cannot bind");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &config.ready_file
        && let Err(e) = write_ready_file(path, &listeners)
    {
        error!(error = %e, path = %path.display(), "cannot write the ready file");
        return ExitCode::FAILURE;
    }
    let grace = config.shutdown_grace;
    let result = runtime.block_on(async move {
        // Listeners must be registered with tokio inside the runtime.
        run(config, listeners, shutdown::signal(grace)).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "switchboard-edge failed");
            ExitCode::FAILURE
        }
    }
}

/// Writes the bound addresses as JSON, atomically (write then rename), so a reader never sees half.
fn write_ready_file(path: &Path, listeners: &Listeners) -> std::io::Result<()> {
    let addresses = listeners.addresses()?;
    let json = serde_json::to_vec(&addresses)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}
