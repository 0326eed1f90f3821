//! One of our binaries running as a child process: started with `--ready-file`, killed on drop.
//!
//! The binaries write their bound addresses as a JSON object to the ready file, atomically (write,
//! then rename), once they listen. That file is the start-up signal, so tests pass port 0 and never
//! sleep or guess. The contract:
//! - `switchboard-edge`: `{"listen":"127.0.0.1:P","admin_listen":"127.0.0.1:Q"}`
//! - `switchboard-router`: `{"admin_listen":"127.0.0.1:Q"}`

use std::ffi::OsStr;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::time::Instant;

use crate::tempdir::TempDir;
use crate::wait::{POLL_INTERVAL, tail};

/// Bound on a binary's start-up, until its ready file appears. Generous, since a debug build on a
/// loaded CI machine that first connects to NATS can take seconds.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Log lines quoted in error messages.
const LOG_TAIL_LINES: usize = 40;

/// Finds one of the workspace's binaries, e.g. `binary_path("switchboard-edge")`.
///
/// An environment variable named after the binary wins: `SWITCHBOARD_EDGE_BIN` for
/// `switchboard-edge`, `SWITCHBOARD_ROUTER_BIN` for `switchboard-router` (the prefix dropped, the rest
/// upper-cased, `-` as `_`). Otherwise the binary is looked up where cargo puts it beside the test
/// executable: tests run from `target/<profile>/deps/`, binaries live in `target/<profile>/`. Cargo
/// builds only the binaries of the package under test, so build the others first
/// (`cargo build --bins`); the error says so.
pub fn binary_path(name: &str) -> Result<PathBuf> {
    let stem = name.strip_prefix("switchboard-").unwrap_or(name);
    let var = format!("SWITCHBOARD_{}_BIN", stem.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("cannot locate the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is not inside target/<profile>/deps", exe.display()))?;
    let path = profile_dir.join(name);
    if !path.is_file() {
        bail!(
            "{} does not exist: run `cargo build --bins` first, or set {var}",
            path.display()
        );
    }
    Ok(path)
}

/// A running binary, killed (SIGKILL) and reaped on drop.
///
/// Its working files live in a temporary directory ([`Process::dir`]): `ready.json` and `<name>.log`
/// (stdout and stderr).
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    /// Set once the child has been reaped; from then on its pid may belong to someone else, so no
    /// signal may be sent to it.
    status: Option<ExitStatus>,
    ready: Value,
    log_path: PathBuf,
    dir: TempDir,
}

impl Process {
    /// Starts `path` with `args` plus `--ready-file <dir>/ready.json`, and waits until the ready file
    /// exists (at most 20 s).
    ///
    /// `SWITCHBOARD_*` variables of the test's environment are removed, so that only `args` configure
    /// the process. Fails early, quoting the end of the process's log, if it exits first.
    pub async fn spawn<I, S>(path: impl AsRef<Path>, args: I) -> Result<Process>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map_or_else(|| "process".into(), |n| n.to_string_lossy().into_owned());
        let dir = TempDir::new(name.strip_prefix("switchboard-").unwrap_or(&name))?;
        let ready_path = dir.path().join("ready.json");
        let log_path = dir.path().join(format!("{name}.log"));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;

        let mut command = Command::new(path);
        command
            .args(args)
            .arg("--ready-file")
            .arg(&ready_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Only the arguments configure the process: the machine's SWITCHBOARD_* settings, and its
        // OTEL_* ones (which would turn tracing on and point it at some collector), are not passed on.
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("SWITCHBOARD_") || key_text.starts_with("OTEL_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", path.display()))?;

        // From here on the guard exists, so every early return below kills the child.
        let mut process = Process {
            name,
            child,
            status: None,
            ready: Value::Null,
            log_path,
            dir,
        };
        process.ready = process.wait_ready(&ready_path).await?;
        Ok(process)
    }

    async fn wait_ready(&mut self, ready_path: &Path) -> Result<Value> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // The file is renamed into place, so if it exists it is complete.
            if ready_path.exists() {
                let text = std::fs::read_to_string(ready_path)
                    .with_context(|| format!("cannot read {}", ready_path.display()))?;
                let ready: Value = serde_json::from_str(&text).with_context(|| {
                    format!("{}: the ready file is not JSON: {text:?}", self.name)
                })?;
                if !ready.is_object() {
                    bail!("{}: the ready file is not a JSON object: {text}", self.name);
                }
                return Ok(ready);
            }
            if let Some(status) = self.child.try_wait()? {
                self.status = Some(status);
                bail!(
                    "{} exited ({status}) before writing its ready file; its log ends:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} wrote no ready file within {START_TIMEOUT:?}; its log ends:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The ready file's JSON object.
    pub fn ready(&self) -> &Value {
        &self.ready
    }

    /// The address under `key` in the ready file, e.g. `addr("listen")` or `addr("admin_listen")`.
    pub fn addr(&self, key: &str) -> Result<SocketAddr> {
        let value = self
            .ready
            .get(key)
            .and_then(Value::as_str)
            .with_context(|| {
                format!(
                    "{}: no address {key:?} in the ready file {}",
                    self.name, self.ready
                )
            })?;
        value
            .parse()
            .with_context(|| format!("{}: {key} is not an address: {value:?}", self.name))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's temporary directory (ready file, log), removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        crate::wait::read_log(&self.log_path)
    }

    fn log_tail(&self) -> String {
        tail(&self.log(), LOG_TAIL_LINES)
    }

    /// Sends SIGKILL, like a crash or an OOM kill: no shutdown code runs. Use [`Process::wait_exit`]
    /// to reap it.
    pub fn kill9(&mut self) -> Result<()> {
        self.ensure_not_reaped()?;
        self.child.kill().context("cannot send SIGKILL")
    }

    /// Sends SIGTERM, the graceful shutdown an orchestrator starts (e.g. a rolling upgrade).
    pub fn terminate(&mut self) -> Result<()> {
        self.signal("TERM")
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn interrupt(&mut self) -> Result<()> {
        self.signal("INT")
    }

    fn signal(&mut self, name: &str) -> Result<()> {
        self.ensure_not_reaped()?;
        send_signal(self.pid(), name)
    }

    fn ensure_not_reaped(&self) -> Result<()> {
        match self.status {
            Some(status) => bail!("{} has already exited ({status})", self.name),
            None => Ok(()),
        }
    }

    /// Waits until the process has exited, at most `timeout`, and returns how it exited. Repeated
    /// calls return the same status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.status = Some(status);
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} (pid {}) still runs after {timeout:?}; its log ends:\n{}",
                    self.name,
                    self.pid(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends the signal `name` (`TERM`, `INT`, ...) with kill(1): the standard library sends only
/// SIGKILL, and calling libc would need `unsafe`, which the workspace forbids.
fn send_signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .context("cannot run kill(1)")?;
    if !status.success() {
        bail!("kill -s {name} {pid} failed ({status})");
    }
    Ok(())
}
