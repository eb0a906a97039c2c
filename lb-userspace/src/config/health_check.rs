//! The TOML form of health checking: keepalived's virtual_server options on `[[service]]`,
//! its real_server options on `[[service.real_server]]` and its checker blocks as
//! `[[service.real_server.health_check]]` (one `[service.real_server.health_check]` table is
//! accepted too), with keepalived's names and defaults.
//!
//! ```toml
//! [[service]]                       # ...
//! quorum = 1                        # minimum live weight (default 1)
//! hysteresis = 0
//! quorum_up = "/usr/local/bin/up"   # quorum_down too
//! sorry_server = "10.0.0.9"         # serves alone while the quorum is lost
//! alpha = false                     # true: servers start down until a check passes
//! omega = false                     # true: run the down notifiers at stop
//!
//! [[service.real_server]]           # ...
//! inhibit_on_failure = false        # true: weight 0 instead of removal when down
//! notify_up = "/usr/local/bin/rs-up"  # notify_down too
//!
//! [[service.real_server.health_check]]
//! type = "TCP_CHECK"                # TCP_CHECK | HTTP_GET | SSL_GET | MISC_CHECK
//! delay_loop = 60                   # seconds (decimals allowed)
//! connect_timeout = 5
//! retry = 1                         # retries after a failed attempt (nb_get_retry too)
//! delay_before_retry = 1            # default 3 for HTTP_GET and SSL_GET
//! warmup = 60                       # random delay before the first check, default delay_loop
//! # connect_ip, connect_port, bindto: where to check from and to
//! # HTTP_GET/SSL_GET: http_protocol ("1.0", "1.0C", "1.1"), virtualhost, and
//! # [[service.real_server.health_check.url]] path, status_code (["200-299"]), digest, virtualhost
//! # MISC_CHECK: misc_path, misc_timeout, misc_dynamic
//! ```

use std::{net::IpAddr, time::Duration};

use anyhow::{Result, bail};
use serde::{
    Deserialize, Deserializer,
    de::{
        MapAccess, SeqAccess, Visitor,
        value::{MapAccessDeserializer, SeqAccessDeserializer},
    },
};

use crate::{
    health::model::{
        Check, CheckKind, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DELAY_LOOP, DEFAULT_STATUS_CODES,
        HttpCheck, HttpProtocol, MiscCheck, RealServerHealth, ServiceHealth, UrlCheck,
    },
    model::ServiceAddr,
};

/// A real server's checkers: one table or an array of them.
#[derive(Default)]
pub(super) struct Checks(Vec<CheckEntry>);

impl<'de> Deserialize<'de> for Checks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = Checks;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a health_check table or an array of them")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Checks, A::Error> {
                let one = CheckEntry::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Checks(vec![one]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Checks, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(Checks)
            }
        }
        d.deserialize_any(OneOrMany)
    }
}

#[derive(Clone, Copy, Deserialize)]
enum CheckType {
    #[serde(rename = "TCP_CHECK")]
    Tcp,
    #[serde(rename = "HTTP_GET")]
    Http,
    #[serde(rename = "SSL_GET")]
    Ssl,
    #[serde(rename = "MISC_CHECK")]
    Misc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckEntry {
    #[serde(rename = "type")]
    kind: CheckType,
    delay_loop: Option<f64>,
    connect_timeout: Option<f64>,
    #[serde(alias = "nb_get_retry")]
    retry: Option<u32>,
    delay_before_retry: Option<f64>,
    warmup: Option<f64>,
    connect_ip: Option<IpAddr>,
    connect_port: Option<u16>,
    bindto: Option<IpAddr>,
    http_protocol: Option<HttpProtocol>,
    virtualhost: Option<String>,
    #[serde(default)]
    url: Vec<UrlEntry>,
    misc_path: Option<String>,
    misc_timeout: Option<f64>,
    #[serde(default)]
    misc_dynamic: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlEntry {
    path: String,
    #[serde(default)]
    status_code: Vec<StatusCode>,
    digest: Option<String>,
    virtualhost: Option<String>,
}

/// `200` or `"200"` or `"200-299"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum StatusCode {
    Code(u16),
    Text(String),
}

/// `s` seconds as a duration, or an error naming `what`.
fn seconds(what: &str, s: f64) -> Result<Duration> {
    match Duration::try_from_secs_f64(s) {
        Ok(d) => Ok(d),
        Err(_) => bail!("{what} = {s}: not a number of seconds"),
    }
}

/// [`seconds`] of a value that may be absent.
fn optional(what: &str, s: Option<f64>) -> Result<Option<Duration>> {
    s.map(|s| seconds(what, s)).transpose()
}

impl StatusCode {
    fn range(&self) -> Result<(u16, u16)> {
        let (lo, hi) = match self {
            Self::Code(c) => (*c, *c),
            Self::Text(t) => {
                let (lo, hi) = t.split_once('-').unwrap_or((t, t));
                match (lo.trim().parse(), hi.trim().parse()) {
                    (Ok(lo), Ok(hi)) if lo <= hi => (lo, hi),
                    _ => bail!("status_code {t:?}: not a code or a range"),
                }
            }
        };
        Ok((lo, hi))
    }
}

impl CheckEntry {
    fn check(self) -> Result<Check> {
        let http = matches!(self.kind, CheckType::Http | CheckType::Ssl);
        let misc = matches!(self.kind, CheckType::Misc);
        if !http && (self.http_protocol.is_some() || !self.url.is_empty()) {
            bail!("http_protocol and url belong to HTTP_GET and SSL_GET");
        }
        if !http && self.virtualhost.is_some() {
            bail!("virtualhost belongs to HTTP_GET and SSL_GET");
        }
        if !misc && (self.misc_path.is_some() || self.misc_timeout.is_some() || self.misc_dynamic) {
            bail!("misc_path, misc_timeout and misc_dynamic belong to MISC_CHECK");
        }
        let kind = match self.kind {
            CheckType::Tcp => CheckKind::Tcp,
            CheckType::Http | CheckType::Ssl => {
                if self.url.is_empty() {
                    bail!("an HTTP_GET or SSL_GET needs at least one url");
                }
                let urls = self
                    .url
                    .into_iter()
                    .map(|u| {
                        let mut status_codes = u
                            .status_code
                            .iter()
                            .map(StatusCode::range)
                            .collect::<Result<Vec<_>>>()?;
                        if status_codes.is_empty() {
                            status_codes.push(DEFAULT_STATUS_CODES);
                        }
                        Ok(UrlCheck {
                            path: u.path,
                            status_codes,
                            digest: u.digest.map(|d| d.to_ascii_lowercase()),
                            virtualhost: u.virtualhost,
                        })
                    })
                    .collect::<Result<_>>()?;
                CheckKind::Http(HttpCheck {
                    tls: matches!(self.kind, CheckType::Ssl),
                    virtualhost: self.virtualhost,
                    protocol: self.http_protocol.unwrap_or_default(),
                    urls,
                })
            }
            CheckType::Misc => CheckKind::Misc(MiscCheck {
                path: match self.misc_path {
                    Some(p) => p,
                    None => bail!("a MISC_CHECK needs misc_path"),
                },
                timeout: optional("misc_timeout", self.misc_timeout)?,
                dynamic: self.misc_dynamic,
            }),
        };
        let check = Check {
            connect_ip: self.connect_ip,
            connect_port: self.connect_port,
            bindto: self.bindto,
            delay_loop: optional("delay_loop", self.delay_loop)?.unwrap_or(DEFAULT_DELAY_LOOP),
            connect_timeout: optional("connect_timeout", self.connect_timeout)?
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            retry: self.retry.unwrap_or(kind.default_retry()),
            delay_before_retry: optional("delay_before_retry", self.delay_before_retry)?
                .unwrap_or(kind.default_delay_before_retry()),
            warmup: optional("warmup", self.warmup)?,
            kind,
        };
        check.check_timing().map_err(anyhow::Error::msg)?;
        Ok(check)
    }
}

impl super::RealServerEntry {
    /// The real server's health entry at `addr`, if it has checkers.
    pub(super) fn health(&mut self, addr: IpAddr) -> Result<Option<RealServerHealth>> {
        let Checks(entries) = std::mem::take(&mut self.health_check);
        if entries.is_empty() {
            return Ok(None);
        }
        let checks = entries
            .into_iter()
            .map(CheckEntry::check)
            .collect::<Result<_>>()?;
        Ok(Some(RealServerHealth {
            addr,
            inhibit_on_failure: self.inhibit_on_failure,
            notify_up: self.notify_up.take(),
            notify_down: self.notify_down.take(),
            checks,
        }))
    }
}

impl super::ServiceEntry {
    /// The service's health entry at `addr` over its checked `real_servers`; `None` if there
    /// are none (its health options, if any, are then ignored with a warning).
    pub(super) fn health(
        &mut self,
        addr: ServiceAddr,
        real_servers: Vec<RealServerHealth>,
    ) -> Result<Option<ServiceHealth>> {
        if real_servers.is_empty() {
            let given = self.quorum.is_some()
                || self.hysteresis.is_some()
                || self.quorum_up.is_some()
                || self.quorum_down.is_some()
                || self.sorry_server.is_some()
                || self.alpha
                || self.omega;
            if given {
                log::warn!(
                    "service {addr}: quorum, sorry_server, alpha and omega are ignored: no real server has a health_check"
                );
            }
            return Ok(None);
        }
        let mut h = ServiceHealth::new(addr);
        if let Some(super::RealServerAddr(ip, port)) = self.sorry_server.take() {
            if port.is_some_and(|p| p != addr.port) {
                bail!(
                    "sorry_server: direct routing keeps the service port {}",
                    addr.port
                );
            }
            h.sorry_server = Some(ip);
        }
        h.quorum = self.quorum.unwrap_or(h.quorum);
        h.hysteresis = self.hysteresis.unwrap_or(h.hysteresis);
        h.quorum_up = self.quorum_up.take();
        h.quorum_down = self.quorum_down.take();
        h.alpha = self.alpha;
        h.omega = self.omega;
        h.real_servers = real_servers;
        Ok(Some(h))
    }
}
