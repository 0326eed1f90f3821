//! The `switchboard-router` binary: parse and validate configuration, set up logging, bind, run.

use std::process::ExitCode;

use switchboard_router::service::{self, Config};
use switchboard_runtime::{cli, signal};
use tracing::error;

fn main() -> ExitCode {
    let code = serve();
    // Export the spans still queued (2 s at most); nothing when tracing is off.
    switchboard_runtime::trace::shutdown();
    code
}

fn serve() -> ExitCode {
    const NAME: &str = "switchboard-router";
    let validate = |c: &Config| c.validate().map_err(|e| e.to_string());
    let config = match cli::start::<Config>(NAME, validate, |c| (&c.logging, &c.tracing)) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match cli::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
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
    let api = match config.api.api_listen.map(|addr| {
        std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| (addr, e))
    }) {
        None => None,
        Some(Ok(listener)) => Some(listener),
        Some(Err((addr, e))) => {
            error!(error = %e, addr = %addr, "cannot bind the control API's port");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &config.ready_file {
        let written = admin.local_addr().and_then(|addr| {
            let mut ready = serde_json::json!({"admin_listen": addr.to_string()});
            if let Some(api) = &api {
                ready["api_listen"] = api.local_addr()?.to_string().into();
            }
            cli::write_ready_file(path, &ready)
        });
        if let Err(e) = written {
            error!(error = %e, path = %path.display(), "cannot write the ready file");
            return ExitCode::FAILURE;
        }
    }
    match runtime.block_on(service::run(config, admin, api, async {
        // SIGTERM or SIGINT: hand the slots over and stop; a second one exits at once.
        signal::first_then_force().await;
    })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %switchboard_runtime::describe(&e), "switchboard-router failed");
            ExitCode::FAILURE
        }
    }
}
