//! One attempt of one checker against one real server.

use std::{net::SocketAddrV4, time::Duration};

use tokio::net::TcpSocket;

use super::model::{Check, CheckKind};

/// What an attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server passed.
    Up,
    /// The server passed and asks for this weight (MISC_CHECK with `misc_dynamic`).
    Weight(u32),
    /// The server failed, and why.
    Down(String),
}

/// Where a checker connects: `connect_ip`/`connect_port` when given, else the real server's
/// address and the service's port.
pub fn target(check: &Check, real_server: SocketAddrV4) -> SocketAddrV4 {
    SocketAddrV4::new(
        check.connect_ip.unwrap_or(*real_server.ip()),
        check.connect_port.unwrap_or(real_server.port()),
    )
}

/// Runs one attempt of `check` against `real_server` (its address and the service's port).
pub async fn attempt(check: &Check, real_server: SocketAddrV4) -> Outcome {
    let to = target(check, real_server);
    match &check.kind {
        CheckKind::Tcp => match connect(check, to, check.connect_timeout).await {
            Ok(_) => Outcome::Up,
            Err(reason) => Outcome::Down(reason),
        },
        CheckKind::Http(_) | CheckKind::Misc(_) => {
            Outcome::Down("this checker is not available in this build".into())
        }
    }
}

/// A TCP connection to `to` from `bindto`, within `timeout`.
async fn connect(
    check: &Check,
    to: SocketAddrV4,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if let Some(from) = check.bindto {
        socket
            .bind(SocketAddrV4::new(from, 0).into())
            .map_err(|e| format!("bind to {from}: {e}"))?;
    }
    match tokio::time::timeout(timeout, socket.connect(to.into())).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("connect to {to}: {e}")),
        Err(_) => Err(format!("connect to {to}: timed out after {timeout:?}")),
    }
}
