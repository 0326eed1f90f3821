//! Command-line plumbing both binaries share: parsing with the exit codes operators script against
//! (64 for invalid configuration), logging set-up, and the atomic ready file.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

/// sysexits' EX_USAGE: the configuration is invalid.
pub const EX_USAGE: u8 = 64;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The logging flags both binaries take.
#[derive(Debug, Clone, clap::Args)]
pub struct Logging {
    /// Log format.
    #[arg(
        long,
        env = "SWITCHBOARD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax, e.g. `info`, or `info,switchboard_router=debug` to see
    /// every command a router applies).
    #[arg(long, env = "SWITCHBOARD_LOG", default_value = "info")]
    pub log: String,
}

/// Parses the command line and environment into `C`, then runs `validate`. On `--help` or
/// `--version` the process should exit 0, on anything invalid 64 (after printing why): that exit code
/// is returned as the error.
pub fn parse<C: Parser>(
    name: &str,
    validate: impl FnOnce(&C) -> Result<(), String>,
) -> Result<C, ExitCode> {
    let config = match C::try_parse() {
        Ok(config) => config,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return Err(ExitCode::SUCCESS);
        }
        Err(e) => {
            let _ = e.print();
            return Err(ExitCode::from(EX_USAGE));
        }
    };
    if let Err(e) = validate(&config) {
        eprintln!("{name}: {e}");
        return Err(ExitCode::from(EX_USAGE));
    }
    Ok(config)
}

/// Logs to stderr with the `filter` (EnvFilter syntax): text (coloured only on a terminal) or JSON
/// lines. An invalid filter is invalid configuration (exit 64).
pub fn init_logging(name: &str, logging: &Logging) -> Result<(), ExitCode> {
    let (format, filter) = (logging.log_format, logging.log.as_str());
    let filter = EnvFilter::try_new(filter).map_err(|e| {
        eprintln!("{name}: invalid configuration: --log {filter:?}: {e}");
        ExitCode::from(EX_USAGE)
    })?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    Ok(())
}

/// Writes `json` to `path` atomically (a temporary file, then a rename), so a reader polling for the
/// file never sees half of it.
pub fn write_ready_file(path: &Path, json: &serde_json::Value) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json.to_string())?;
    std::fs::rename(&tmp, path)
}

/// The first steps of both binaries: parse and validate `C` ([`parse`]), then log as it says
/// ([`init_logging`]).
pub fn start<C: Parser>(
    name: &str,
    validate: impl FnOnce(&C) -> Result<(), String>,
    logging: impl FnOnce(&C) -> &Logging,
) -> Result<C, ExitCode> {
    let config = parse::<C>(name, validate)?;
    init_logging(name, logging(&config))?;
    Ok(config)
}

/// The multi-threaded tokio runtime both binaries run on; if it cannot start, the reason is logged
/// and the exit code is 1.
pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start the runtime");
            ExitCode::FAILURE
        })
}
