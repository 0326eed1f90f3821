//! The `switchboard-router` binary: parse and validate configuration, set up logging, bind, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use switchboard_router::service::{self, Config, config::LogFormat};
use tracing::error;
use tracing_subscriber::EnvFilter;

/// sysexits' EX_USAGE: the configuration is invalid.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Err(e) = config.validate() {
        eprintln!("switchboard-router: {e}");
        return ExitCode::from(EX_USAGE);
    }
    let filter = match EnvFilter::try_new(&config.log) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!(
                "switchboard-router: invalid configuration: --log {:?}: {e}",
                config.log
            );
            return ExitCode::from(EX_USAGE);
        }
    };
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
    let admin = match std::net::TcpListener::bind(config.admin_listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
    {
        Ok(listener) => listener,
        Err(e) => {
            error!(error = %e, addr = %config.admin_listen, "cannot bind the admin port");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &config.ready_file {
        let written = admin.local_addr().and_then(|addr| {
            let json = serde_json::json!({"admin_listen": addr.to_string()}).to_string();
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, json)?;
            std::fs::rename(&tmp, path)
        });
        if let Err(e) = written {
            error!(error = %e, path = %path.display(), "cannot write the ready file");
            return ExitCode::FAILURE;
        }
    }
    let result = runtime.block_on(service::run(config, admin, shutdown_signal()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "switchboard-router failed");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or SIGINT: hand the slots over and stop.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => return,
                _ = tokio::signal::ctrl_c() => return,
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
