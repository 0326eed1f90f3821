//! One real TURN allocation, made by `turnutils_uclient` (coturn's test client).
//!
//! What the client's output means was checked by hand against coturn 4.6 (Debian 12): with good
//! credentials it prints (with `-v`) `Received relay addr: <address>` and exits 0; with a wrong
//! password, an expired username or an unknown secret, every Allocate is answered 401 (coturn logs
//! `check_stun_auth: Cannot find credentials of user <username>`), and after its retries the client
//! prints `ERROR: Cannot complete Allocation` and exits 255, within milliseconds. With nothing
//! listening it prints `Connection refused` and sends no Allocate at all: that is an error here, not
//! a refusal, so a test of refused credentials cannot pass against a dead server.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use super::INSTALL_HINT;

/// Bound on one allocation. A granted one takes about 2 s (the client waits for its peer before it
/// ends); a refused one milliseconds.
const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the TURN server made of an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// It allocated a relay: the credentials are good.
    Granted {
        /// The relayed transport address it gave.
        relay: SocketAddr,
    },
    /// It answered every Allocate request with an error: the credentials were refused.
    Refused {
        /// What `turnutils_uclient` printed.
        output: String,
    },
}

/// Allocates a UDP relay on the TURN server at `server` (a 127.0.0.1 address) with `username` and
/// `password`, and releases it. An error means no answer from the server or no client to ask with,
/// never refused credentials.
pub async fn allocate(server: SocketAddr, username: &str, password: &str) -> Result<Allocation> {
    let mut command = Command::new("turnutils_uclient");
    command
        // -v: report the relay address; -n 0: send no data; -c: no RTCP allocation;
        // -e: the peer to set a permission for (nothing needs to listen there).
        .args(["-v", "-n", "0", "-c", "-e"])
        .arg(Ipv4Addr::LOCALHOST.to_string())
        .arg("-p")
        .arg(server.port().to_string())
        .arg("-u")
        .arg(username)
        .arg("-w")
        .arg(password)
        .arg(server.ip().to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(ALLOCATE_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("turnutils_uclient is not installed: {INSTALL_HINT}")
        }
        Ok(Err(e)) => return Err(e).context("cannot run turnutils_uclient"),
        Err(_) => bail!("turnutils_uclient did not finish within {ALLOCATE_TIMEOUT:?}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    classify(output.status.success(), text)
}

/// Reads `turnutils_uclient`'s verdict from its exit status and output.
fn classify(success: bool, output: String) -> Result<Allocation> {
    let relay = output.lines().find_map(|line| {
        let (_, address) = line.split_once("Received relay addr: ")?;
        address.trim().parse::<SocketAddr>().ok()
    });
    let answered = output.contains("allocate response received");
    match relay {
        Some(relay) if success => Ok(Allocation::Granted { relay }),
        None if !success && answered && output.contains("Cannot complete Allocation") => {
            Ok(Allocation::Refused { output })
        }
        _ => bail!(
            "turnutils_uclient neither allocated nor was refused (exit {}); it printed:\n{output}",
            if success { "success" } else { "failure" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs of coturn 4.6's client, abridged.
    #[test]
    fn the_clients_output_is_read_right() {
        let granted = "0: : IPv4. Connected to: 127.0.0.1:34780\n0: : allocate sent\n\
                       0: : allocate response received: \n0: : success\n\
                       0: : IPv4. Received relay addr: 127.0.0.1:49189\n0: : clnet_allocate: rtv=0\n";
        assert_eq!(
            classify(true, granted.into()).unwrap(),
            Allocation::Granted {
                relay: "127.0.0.1:49189".parse().unwrap()
            }
        );
        let refused = "0: : allocate sent\n0: : allocate response received: \n\
                       0: : ERROR: Cannot complete Allocation\n";
        assert!(matches!(
            classify(false, refused.into()).unwrap(),
            Allocation::Refused { .. }
        ));
        // Nothing listening: no answer, so no verdict on the credentials.
        assert!(classify(false, "recv: Connection refused\n".into()).is_err());
        assert!(classify(false, granted.into()).is_err());
    }
}
