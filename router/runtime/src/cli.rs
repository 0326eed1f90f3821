//! Command-line plumbing both binaries share: parsing with the exit codes operators script against
//! (64 for invalid configuration), logging and tracing set-up, and the atomic ready file.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::trace::{self, TracingArgs};

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
/// lines. An invalid filter is invalid configuration (exit 64). With `tracing` on, spans are
/// exported too ([`crate::trace`]), log lines carry their trace and span ids, and
/// [`crate::trace::shutdown`] should run as the process ends; if the exporter cannot be set up, the
/// exit code is 1.
pub fn init_logging(name: &str, logging: &Logging, tracing: &TracingArgs) -> Result<(), ExitCode> {
    let (format, filter) = (logging.log_format, logging.log.as_str());
    let filter = EnvFilter::try_new(filter).map_err(|e| {
        eprintln!("{name}: invalid configuration: --log {filter:?}: {e}");
        ExitCode::from(EX_USAGE)
    })?;
    let pipeline =
        trace::Pipeline::build(tracing, name, env!("CARGO_PKG_VERSION")).map_err(|e| {
            eprintln!("{name}: {}", crate::describe(&e));
            ExitCode::FAILURE
        })?;
    // What is exported: Switchboard's own spans (`trace::TARGET`) and the warnings and errors
    // logged inside them, which become span events. Not the exporter's own crates, which log
    // through this subscriber too (each export would trace itself). Not decided by `--log`: an
    // operator who quiets the logs keeps the traces.
    let otel = pipeline
        .as_ref()
        .map(|p| p.layer().with_filter(exported_spans()));
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs
            .map_event_format(|f| trace::WithTraceIds::new(f, false))
            .boxed(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .map_event_format(|f| trace::WithTraceIds::new(f, true))
            .boxed(),
    };
    // Log lines as `--log` says, without the exported spans as their context: a line names its
    // trace by id instead (`trace::WithTraceIds`), and the spans cost the log layer nothing.
    // The hint (no level excluded) keeps the EnvFilter's own in force: without one, the process's
    // maximum level would be TRACE, and every debug and trace record of a dependency (through the
    // `log` crate, too) would be built and offered to the filters before being dropped.
    let not_exported_spans = filter_fn(|meta| !(meta.is_span() && meta.target() == trace::TARGET))
        .with_max_level_hint(LevelFilter::TRACE);
    let logs = logs.with_filter(filter.and(not_exported_spans));
    let installed = tracing_subscriber::registry()
        .with(otel)
        .with(logs)
        .try_init();
    if let Err(e) = installed {
        eprintln!("{name}: cannot set up logging: {e}");
        return Err(ExitCode::FAILURE);
    }
    if let Some(pipeline) = &pipeline {
        trace::install(pipeline);
    }
    Ok(())
}

/// Switchboard's spans, warnings and errors; nothing of the exporter's transport and the SDK.
fn exported_spans() -> Targets {
    [
        "h2",
        "hyper",
        "hyper_util",
        "tonic",
        "tower",
        "opentelemetry",
        "opentelemetry_sdk",
        "opentelemetry_otlp",
    ]
    .into_iter()
    .fold(
        Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target(trace::TARGET, LevelFilter::INFO),
        |targets, target| targets.with_target(target, LevelFilter::OFF),
    )
}

/// Writes `json` to `path` atomically (a temporary file, then a rename), so a reader polling for the
/// file never sees half of it.
pub fn write_ready_file(path: &Path, json: &serde_json::Value) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json.to_string())?;
    std::fs::rename(&tmp, path)
}

/// The first steps of both binaries: parse and validate `C` ([`parse`]), then log and trace as it
/// says ([`init_logging`]).
pub fn start<C: Parser>(
    name: &str,
    validate: impl FnOnce(&C) -> Result<(), String>,
    settings: impl FnOnce(&C) -> (&Logging, &TracingArgs),
) -> Result<C, ExitCode> {
    let config = parse::<C>(name, validate)?;
    let (logging, tracing) = settings(&config);
    init_logging(name, logging, tracing)?;
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
