//! One attempt of one checker against one real server.

use std::{
    fmt::Display,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::{
    net::{TcpSocket, TcpStream},
    time::{Instant, timeout_at},
};

use super::{
    http, misc,
    model::{Check, CheckKind},
};

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
pub fn target(check: &Check, real_server: SocketAddr) -> SocketAddr {
    SocketAddr::new(
        check.connect_ip.unwrap_or(real_server.ip()),
        check.connect_port.unwrap_or(real_server.port()),
    )
}

/// Runs one attempt of `check` against `real_server` (its address and the service's port).
///
/// Never blocks the thread, and stops all its work (sockets, a MISC_CHECK's processes) when
/// dropped, so a caller may run many at once and give up on any of them.
pub async fn attempt(check: &Check, real_server: SocketAddr) -> Outcome {
    let to = target(check, real_server);
    match &check.kind {
        CheckKind::Tcp => {
            passed(connect(check.bindto, to, Deadline::after(check.connect_timeout)).await)
        }
        CheckKind::Http(http) => passed(http::attempt(check, http, to).await),
        CheckKind::Misc(misc) => misc::attempt(check, misc).await,
    }
}

/// Up if a step passed, else Down with its reason.
fn passed<T>(step: Result<T, String>) -> Outcome {
    step.map_or_else(Outcome::Down, |_| Outcome::Up)
}

/// A TCP connection to `to` from `bindto` (an ephemeral port on it), before `deadline`.
pub(super) async fn connect(
    bindto: Option<IpAddr>,
    to: SocketAddr,
    deadline: Deadline,
) -> Result<TcpStream, String> {
    let socket = match to {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(from) = bindto {
        socket
            .bind(SocketAddr::new(from, 0))
            .map_err(|e| format!("bind to {from}: {e}"))?;
    }
    deadline
        .bound(format!("connect to {to}"), socket.connect(to))
        .await
}

/// The end of an attempt's time budget (its `connect_timeout`), shared by the attempt's steps.
#[derive(Clone, Copy, Debug)]
pub(super) struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// `budget` from now.
    pub(super) fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// The result of `step`, the step named `what`, if it finishes before the deadline; its
    /// error or the timeout, prefixed with `what`, if not.
    pub(super) async fn bound<T, E: Display>(
        self,
        what: String,
        step: impl Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        match timeout_at(self.at, step).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(format!("{what}: timed out after {:?}", self.budget)),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::Ipv4Addr;

    use tokio::net::TcpListener;

    use super::*;
    use crate::health::model::CheckKind;

    /// A checker of `kind` with short timeouts and nothing else set.
    pub(crate) fn check(kind: CheckKind) -> Check {
        Check {
            kind,
            connect_ip: None,
            connect_port: None,
            bindto: None,
            delay_loop: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(300),
            retry: 1,
            delay_before_retry: Duration::from_secs(1),
            warmup: None,
        }
    }

    /// A listener on 127.0.0.1 and its address.
    pub(crate) async fn listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    #[tokio::test]
    async fn tcp_check_passes_when_the_port_accepts_and_fails_when_it_refuses() {
        let (listener, addr) = listener().await;
        assert_eq!(attempt(&check(CheckKind::Tcp), addr).await, Outcome::Up);
        drop(listener);
        let Outcome::Down(why) = attempt(&check(CheckKind::Tcp), addr).await else {
            panic!("a closed port passed")
        };
        assert!(why.starts_with(&format!("connect to {addr}: ")), "{why}");
    }

    #[tokio::test]
    async fn tcp_check_connects_from_bindto_to_connect_ip_and_port() {
        let (listener, addr) = listener().await;
        let mut tcp = check(CheckKind::Tcp);
        tcp.bindto = Some(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        tcp.connect_ip = Some(addr.ip());
        tcp.connect_port = Some(addr.port());
        let elsewhere = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 9);
        assert_eq!(attempt(&tcp, elsewhere).await, Outcome::Up);
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), Ipv4Addr::new(127, 0, 0, 2));
    }

    #[tokio::test]
    async fn a_check_that_cannot_bind_is_down_with_the_reason() {
        let (_listener, addr) = listener().await;
        let mut tcp = check(CheckKind::Tcp);
        // TEST-NET-1: on no interface of this host, so the bind fails before anything is sent.
        tcp.bindto = Some(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let Outcome::Down(why) = attempt(&tcp, addr).await else {
            panic!("a check that could not bind passed")
        };
        assert!(why.starts_with("bind to 192.0.2.1: "), "{why}");
    }

    #[test]
    fn attempts_can_run_on_any_tokio_worker() {
        fn send<T: Send>(_: T) {}
        let addr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 80);
        send(attempt(&check(CheckKind::Tcp), addr));
    }
}
