//! The daemon's control protocol: one JSON request line and one JSON response line per
//! connection on a Unix socket only root can open (the daemon's side is
//! [`control_server`](crate::control_server)).

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

/// Longest request line, its newline included. The largest table xdpvs holds (1,024 services,
/// 131,072 real servers) restored with `-R` is about 20 MiB of JSON.
pub const MAX_REQUEST: usize = 32 << 20;

/// The answer to a peer that is not root.
pub const NOT_ROOT: &str = "Permission denied (you must be root)";

/// The command of one request line (without its newline), or why it is refused.
pub fn parse_request(line: &[u8]) -> Result<Command, String> {
    let request: Request =
        serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))?;
    if request.version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} not supported (daemon speaks {PROTOCOL_VERSION})",
            request.version
        ));
    }
    Ok(request.command)
}

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

/// Sends `command` to the daemon listening on `socket` and returns its reply, or the daemon's
/// refusal. A request longer than the daemon accepts is not sent.
pub fn call(socket: &Path, command: Command) -> Result<Reply> {
    let mut line = serde_json::to_string(&Request {
        version: PROTOCOL_VERSION,
        command,
    })?;
    line.push('\n');
    if line.len() > MAX_REQUEST {
        bail!(
            "the request is {} bytes long; xdpvsd accepts at most {MAX_REQUEST}",
            line.len()
        );
    }
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            anyhow::anyhow!(
                "xdpvsd is not running (no daemon listening on {})",
                socket.display()
            )
        }
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(NOT_ROOT),
        _ => anyhow::Error::new(e).context(format!("connecting to {}", socket.display())),
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    // A daemon that refuses the request answers before reading it all, and closes: its answer
    // is read even when sending failed.
    let sent = stream.write_all(line.as_bytes());
    let mut answer = String::new();
    let read = BufReader::new(stream).read_line(&mut answer);
    if answer.is_empty() {
        sent.context("sending the request")?;
        read.context("reading the daemon's answer")?;
        bail!("xdpvsd closed the connection without answering");
    }
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

    #[test]
    fn a_request_longer_than_the_daemon_accepts_is_not_sent() {
        let dest = crate::model::DestSpec {
            addr: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)),
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        let spec = crate::model::ServiceSpec {
            dests: vec![dest; MAX_REQUEST / 60],
            ..crate::model::tcp_service(80, lb_common::sched::Scheduler::Rr, [])
        };
        let e = call(
            Path::new("/nonexistent/xdpvsd.sock"),
            Command::Edit(vec![Edit::AddService(spec)]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .ends_with(&format!("xdpvsd accepts at most {MAX_REQUEST}")),
            "{e}"
        );
    }
}
