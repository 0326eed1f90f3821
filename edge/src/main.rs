//! The `switchboard-edge` binary: parse and validate configuration, set up logging, bind, run.
//! `switchboard-edge token …` instead prints a join token ([`token_command`]).

use std::process::ExitCode;

use switchboard_edge::{Config, Listeners, descriptors, run, shutdown, token_command};
use switchboard_runtime::cli;
use tracing::{error, warn};

fn main() -> ExitCode {
    let code = serve();
    // Export the spans still queued (2 s at most); nothing when tracing is off.
    switchboard_runtime::trace::shutdown();
    code
}

fn serve() -> ExitCode {
    const NAME: &str = "switchboard-edge";
    // The server takes no positional argument, so a first argument `token` can only mean the
    // command (see token_command for why it is not a clap subcommand).
    if std::env::args_os().nth(1).as_deref() == Some(token_command::COMMAND.as_ref()) {
        return token_command::main(std::env::args_os().skip(2));
    }
    let validate = |c: &Config| c.validate().map_err(|e| e.to_string());
    let config = match cli::start::<Config>(NAME, validate, |c| (&c.logging, &c.tracing)) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // Every client is a descriptor: take all the process may have (run() plans clients within it).
    let fd_limit = match descriptors::raise_limit() {
        Ok(limit) => Some(limit),
        Err(e) => {
            warn!(error = %e, "cannot raise the descriptor limit");
            descriptors::soft_limit()
        }
    };
    if let Err(e) = descriptors::plan(config.max_connections, fd_limit, config.fd_reserve) {
        error!("{e}");
        return ExitCode::from(cli::EX_USAGE);
    }
    let runtime = match cli::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let listeners = match Listeners::bind(&config) {
        Ok(listeners) => listeners,
        Err(e) => {
            error!(error = %e, "cannot bind");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &config.ready_file {
        let written = listeners.addresses().and_then(|addresses| {
            let json = serde_json::to_value(addresses).map_err(std::io::Error::other)?;
            cli::write_ready_file(path, &json)
        });
        if let Err(e) = written {
            error!(error = %e, path = %path.display(), "cannot write the ready file");
            return ExitCode::FAILURE;
        }
    }
    let grace = config.shutdown_grace;
    // Listeners must be registered with tokio inside the runtime.
    match runtime.block_on(async move { run(config, listeners, shutdown::signal(grace)).await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %switchboard_runtime::describe(&e), "switchboard-edge failed");
            ExitCode::FAILURE
        }
    }
}
