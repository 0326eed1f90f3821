//! `switchboard-loadtest`: parses the flags and runs the scenario; exits 1 when messages were lost or
//! the error rate was too high, 2 when the run could not be done at all (bad usage, no server that
//! accepts a connection).

use std::process::ExitCode;

use clap::Parser;
use switchboard_loadtest::{Cli, Scenario, bare_server, execute};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Scenario::BareServer(args) = &cli.scenario {
        return match bare_server::serve(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("switchboard-loadtest bare-server: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    match execute(&cli).await {
        Ok((_, None)) => ExitCode::SUCCESS,
        Ok((_, Some(why))) => {
            eprintln!("FAILED: {why}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("switchboard-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}
