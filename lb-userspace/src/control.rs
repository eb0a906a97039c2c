//! The daemon's control protocol: one JSON request line and one JSON response line per
//! connection on a Unix socket only root can open.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::{
    edit::Edit,
    listing::{Connection, Listing},
    model::ServiceAddr,
};

/// Version of the request/response format; both sides refuse another one.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request to the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// What is asked.
    pub command: Command,
}

/// What a request asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// The services, real servers and counters.
    List,
    /// The connection table and persistence templates (`-Lc`).
    Connections,
    /// Edits applied as one change: all or none (`-A -E -D -a -e -d -C`, `-R`).
    Edit(Vec<Edit>),
    /// Zero the counters of one service or of all (`-Z`).
    Zero(Option<ServiceAddr>),
    /// The tcp, tcpfin and udp timeouts.
    Timeouts,
    /// Re-read the configuration file and apply the difference.
    Reload,
    /// Sets the tcp, tcpfin and udp timeouts in seconds; 0 keeps a value (ipvsadm `--set`).
    SetTimeouts {
        /// ESTABLISHED.
        tcp: u32,
        /// FIN_WAIT.
        tcpfin: u32,
        /// UDP.
        udp: u32,
    },
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// [`PROTOCOL_VERSION`] of the daemon.
    pub version: u32,
    /// The reply, or the message of a refused request.
    pub result: Result<Reply, String>,
}

/// A successful reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Answer to [`Command::List`].
    Listing(Listing),
    /// Answer to [`Command::Connections`].
    Connections(Vec<Connection>),
    /// Answer to [`Command::Timeouts`] and [`Command::SetTimeouts`]: tcp, tcpfin, udp.
    Timeouts([u32; 3]),
    /// The command was carried out.
    Done,
}

/// Sends `command` to the daemon listening on `socket` and returns its reply.
pub fn call(socket: &Path, command: Command) -> Result<Reply> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            anyhow::anyhow!(
                "xdpvsd is not running (no daemon listening on {})",
                socket.display()
            )
        }
        std::io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!("Permission denied (you must be root)")
        }
        _ => anyhow::Error::new(e).context(format!("connecting to {}", socket.display())),
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(&Request {
        version: PROTOCOL_VERSION,
        command,
    })?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("reading the daemon's answer")?;
    let response: Response =
        serde_json::from_str(&answer).context("the daemon's answer does not parse")?;
    if response.version != PROTOCOL_VERSION {
        bail!(
            "xdpvsd speaks protocol version {}, xdpvsadm {PROTOCOL_VERSION}",
            response.version
        );
    }
    response.result.map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_stable() {
        let r = Request {
            version: PROTOCOL_VERSION,
            command: Command::List,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"version":1,"command":"list"}"#
        );
        let back: Response =
            serde_json::from_str(r#"{"version":1,"result":{"Err":"No such service"}}"#).unwrap();
        assert_eq!(back.result, Err("No such service".into()));
    }
}
