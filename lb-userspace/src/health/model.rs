//! What the operator configured for health checking, with keepalived's names and defaults:
//! per virtual service the quorum settings and sorry server, per real server its checkers.
//! Both configuration languages (the TOML file and keepalived.conf) produce these values.

use std::{net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::model::ServiceAddr;

/// Health checking of one virtual service's real servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    /// The service.
    pub addr: ServiceAddr,
    /// Minimum total weight of the live real servers (keepalived `quorum`, default 1).
    pub quorum: u32,
    /// Quorum hysteresis (`hysteresis`, default 0).
    pub hysteresis: u32,
    /// Run when quorum is regained (`quorum_up`).
    pub quorum_up: Option<String>,
    /// Run when quorum is lost (`quorum_down`).
    pub quorum_down: Option<String>,
    /// Replaces every real server while quorum is lost (`sorry_server`).
    pub sorry_server: Option<IpAddr>,
    /// `alpha`: real servers start down until a check passes (default: they start up).
    pub alpha: bool,
    /// `omega`: run the down and quorum_down notifiers when the daemon stops.
    pub omega: bool,
    /// The checked real servers; real servers without an entry are always up.
    pub real_servers: Vec<RealServerHealth>,
}

impl ServiceHealth {
    /// keepalived's defaults for `addr`, with no checked real server.
    pub fn new(addr: ServiceAddr) -> Self {
        Self {
            addr,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
            alpha: false,
            omega: false,
            real_servers: Vec::new(),
        }
    }
}

/// Health checking of one real server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealServerHealth {
    /// The real server.
    pub addr: IpAddr,
    /// `inhibit_on_failure`: a failed server is set to weight 0 instead of being removed.
    pub inhibit_on_failure: bool,
    /// Run when the server comes up (`notify_up`).
    pub notify_up: Option<String>,
    /// Run when the server goes down (`notify_down`).
    pub notify_down: Option<String>,
    /// Its checkers: the server is up while all of them pass.
    pub checks: Vec<Check>,
}

/// One checker of a real server, with its timing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked.
    pub kind: CheckKind,
    /// Address to connect to (`connect_ip`; default the real server's).
    pub connect_ip: Option<IpAddr>,
    /// Port to connect to (`connect_port`; default the service's).
    pub connect_port: Option<u16>,
    /// Source address (`bindto`).
    pub bindto: Option<IpAddr>,
    /// Interval between checks (`delay_loop`, default 60 s; set per service in keepalived).
    pub delay_loop: Duration,
    /// Connection and response timeout (`connect_timeout`, default 5 s).
    pub connect_timeout: Duration,
    /// Failed attempts in a row before a server goes down (`retry`, or the deprecated
    /// `nb_get_retry`; default 1, MISC_CHECK 0).
    pub retry: u32,
    /// Pause before an attempt after a failed one (`delay_before_retry`; default 3 s for
    /// HTTP_GET/SSL_GET, 1 s for the others).
    pub delay_before_retry: Duration,
    /// Longest random delay before the first check (`warmup`; default delay_loop, 0 = none).
    pub warmup: Option<Duration>,
}

/// keepalived's default `delay_loop`.
pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
/// keepalived's default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest timing xdpvs accepts for any checker option (a day).
pub const MAX_TIMING: Duration = Duration::from_secs(86_400);

impl Check {
    /// Refuses timings that cannot work: a zero `delay_loop` or `connect_timeout` (a busy
    /// loop), or any option above [`MAX_TIMING`].
    pub fn check_timing(&self) -> Result<(), String> {
        let misc_timeout = match &self.kind {
            CheckKind::Misc(m) => m.timeout,
            CheckKind::Tcp | CheckKind::Http(_) => None,
        };
        for (name, value, zero_ok) in [
            ("delay_loop", Some(self.delay_loop), false),
            ("connect_timeout", Some(self.connect_timeout), false),
            ("delay_before_retry", Some(self.delay_before_retry), true),
            ("warmup", self.warmup, true),
            ("misc_timeout", misc_timeout, false),
        ] {
            match value {
                Some(v) if v.is_zero() && !zero_ok => {
                    return Err(format!("{name} must be above 0"));
                }
                Some(v) if v > MAX_TIMING => {
                    return Err(format!("{name} must be at most {} s", MAX_TIMING.as_secs()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
impl Check {
    /// delay_loop, connect_timeout, retry, delay_before_retry and warmup, for comparisons.
    pub fn timing(&self) -> (Duration, Duration, u32, Duration, Option<Duration>) {
        (
            self.delay_loop,
            self.connect_timeout,
            self.retry,
            self.delay_before_retry,
            self.warmup,
        )
    }
}

impl CheckKind {
    /// keepalived's default `retry`: 0 for MISC_CHECK, 1 for the others.
    pub const fn default_retry(&self) -> u32 {
        match self {
            Self::Misc(_) => 0,
            Self::Tcp | Self::Http(_) => 1,
        }
    }

    /// keepalived's default `delay_before_retry`: 3 s for HTTP_GET and SSL_GET, 1 s for the
    /// others.
    pub const fn default_delay_before_retry(&self) -> Duration {
        match self {
            Self::Http(_) => Duration::from_secs(3),
            Self::Tcp | Self::Misc(_) => Duration::from_secs(1),
        }
    }
}

/// The kinds of checker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// `TCP_CHECK`: a TCP connection is accepted.
    Tcp,
    /// `HTTP_GET` (and `SSL_GET` with `tls`).
    Http(HttpCheck),
    /// `MISC_CHECK`: a command's exit status.
    Misc(MiscCheck),
}

/// `HTTP_GET` / `SSL_GET`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCheck {
    /// `SSL_GET`: over TLS (certificates are not verified, as keepalived).
    pub tls: bool,
    /// `virtualhost`: the Host header (default the address and port).
    pub virtualhost: Option<String>,
    /// `http_protocol`: 1.0 (default), 1.0C (1.0 with `Connection: close`) or 1.1.
    pub protocol: HttpProtocol,
    /// The URLs; every one must answer as configured.
    pub urls: Vec<UrlCheck>,
}

/// `http_protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpProtocol {
    /// HTTP/1.0.
    #[default]
    #[serde(rename = "1.0")]
    Http10,
    /// HTTP/1.0 with `Connection: close`.
    #[serde(rename = "1.0C")]
    Http10Close,
    /// HTTP/1.1.
    #[serde(rename = "1.1")]
    Http11,
}

/// One `url { }` block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlCheck {
    /// `path`.
    pub path: String,
    /// `status_code`: accepted codes as inclusive ranges (default 200-299).
    pub status_codes: Vec<(u16, u16)>,
    /// `digest`: the MD5 of the body in lower-case hex, as genhash prints it.
    pub digest: Option<String>,
    /// `virtualhost` for this URL.
    pub virtualhost: Option<String>,
}

/// keepalived's default accepted status codes.
pub const DEFAULT_STATUS_CODES: (u16, u16) = (200, 299);

/// `MISC_CHECK`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiscCheck {
    /// `misc_path`: the command line, run without a shell (split on white space, with quotes).
    pub path: String,
    /// `misc_timeout` (default delay_loop).
    pub timeout: Option<Duration>,
    /// `misc_dynamic`: exit 0 up, 1 down, 2..255 up with weight = status - 2.
    pub dynamic: bool,
}
