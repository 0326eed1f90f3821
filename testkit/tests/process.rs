//! The process harness against stand-ins for our binaries: small shell scripts that keep the
//! `--ready-file` contract (or break it), so these tests need no build of the real binaries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use switchboard_testkit::Process;

/// `sh -c SCRIPT` receives our `--ready-file PATH` as `$0 $1`, so `$1` is the ready file.
async fn shell(script: &str) -> anyhow::Result<Process> {
    Process::spawn("/bin/sh", ["-c", script]).await
}

/// Writes the ready file like our binaries do (write, then rename), then waits for signals.
const WELL_BEHAVED: &str = r#"
    trap 'echo "got TERM" >&2; exit 3' TERM
    trap 'echo "got INT" >&2; exit 4' INT
    echo "starting" >&2
    printf '{"listen":"127.0.0.1:4233","admin_listen":"127.0.0.1:9233"}' > "$1.tmp"
    mv "$1.tmp" "$1"
    sleep 30 & wait $!
"#;

#[tokio::test]
async fn the_ready_file_gives_the_addresses_and_signals_stop_the_process() {
    let mut process = shell(WELL_BEHAVED).await.unwrap();
    assert_eq!(process.addr("listen").unwrap().port(), 4233);
    assert_eq!(process.addr("admin_listen").unwrap().port(), 9233);
    assert_eq!(process.ready()["listen"], "127.0.0.1:4233");
    assert!(process.addr("missing").is_err());
    assert!(process.log().contains("starting"));

    process.terminate().unwrap();
    let status = process.wait_exit(Duration::from_secs(5)).await.unwrap();
    assert_eq!(status.code(), Some(3));
    assert!(process.log().contains("got TERM"));
    assert!(process.terminate().is_err(), "no signal to a reaped pid");

    let mut process = shell(WELL_BEHAVED).await.unwrap();
    process.interrupt().unwrap();
    let status = process.wait_exit(Duration::from_secs(5)).await.unwrap();
    assert_eq!(status.code(), Some(4));
}

#[tokio::test]
async fn kill9_is_not_trappable_and_wait_exit_is_bounded() {
    let mut process = shell(WELL_BEHAVED).await.unwrap();
    assert!(process.wait_exit(Duration::from_millis(100)).await.is_err());
    process.kill9().unwrap();
    let status = process.wait_exit(Duration::from_secs(5)).await.unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
}

#[tokio::test]
async fn a_process_that_exits_before_it_is_ready_fails_fast_with_its_log() {
    let started = Instant::now();
    let error = shell("echo 'cannot bind: address in use' >&2; exit 1")
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("exited"), "{message}");
    assert!(message.contains("cannot bind: address in use"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn dropping_the_process_kills_it() {
    let process = shell(WELL_BEHAVED).await.unwrap();
    let pid = process.pid();
    let dir = process.dir().to_owned();
    drop(process);
    // Reaped on drop, so the pid no longer exists (not even as a zombie).
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    if std::env::var_os(switchboard_testkit::KEEP_DIRS_ENV).is_none() {
        assert!(!dir.exists());
    }
}
