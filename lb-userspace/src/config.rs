//! The daemon's TOML configuration file.
//!
//! ```toml
//! interface = "eth0"            # optional; --interface wins
//! metrics = "127.0.0.1:9469"    # optional Prometheus endpoint, loopback only
//!
//! [timeouts]                    # optional, seconds, as ipvsadm --set tcp tcpfin udp
//! tcp = 900
//! tcpfin = 120
//! udp = 300
//!
//! [[service]]
//! protocol = "tcp"              # tcp | udp
//! address = "10.0.0.100:80"     # VIP:port ("[2001:db8::100]:80" for IPv6)
//! scheduler = "rr"              # default wlc, as ipvsadm
//! sched_flags = []              # ipvsadm -b: sh takes "sh-port", "sh-fallback";
//!                               # mh takes "mh-port", "mh-fallback"
//! persistence_timeout = 300     # optional: client persistence in seconds (ipvsadm -p)
//! persistence_granularity = "255.255.255.0"  # optional (ipvsadm -M): IPv4 netmask, or an
//!                                             # IPv6 prefix length (64); default one address
//!
//! [[service.real_server]]
//! address = "10.0.0.2"          # DR: the port is the service's; "10.0.0.2:80" is accepted
//! weight = 1                    # default 1
//! ```
//!
//! Health checks, keepalived's options: see [`health_check`].

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use lb_common::{sched::Scheduler, state::Timeouts};

mod health_check;

use crate::model::{
    self, ClientMask, DEFAULT_SCHEDULER, DestSpec, Persistence, Protocol, SchedFlag, ServiceAddr,
    ServiceSpec, scheduler_name,
};

/// A parsed and validated configuration.
#[derive(Debug, PartialEq, Eq)]
pub struct Config {
    /// Interface to attach to, if the file names one.
    pub interface: Option<String>,
    /// Virtual services in file order.
    pub services: Vec<ServiceSpec>,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// Loopback address of the Prometheus endpoint, if any.
    pub metrics: Option<std::net::SocketAddr>,
    /// Health checking, per service that has checked real servers.
    pub health: Vec<crate::health::model::ServiceHealth>,
}

/// Where the daemon's configuration comes from: re-read on every reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// xdpvsd's TOML file (`--config`).
    Toml(PathBuf),
    /// keepalived.conf as is (`--keepalived-conf`).
    Keepalived(PathBuf),
}

/// A configuration and what its reading tolerated.
#[derive(Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// What was accepted with a warning (keepalived.conf only).
    pub warnings: Vec<crate::keepalived::Diagnostic>,
}

impl Source {
    /// Reads and validates the configuration.
    pub fn read(&self) -> Result<Loaded> {
        match self {
            Self::Toml(path) => Config::load(path).map(|config| Loaded {
                config,
                warnings: Vec::new(),
            }),
            // Its diagnostics name the file (an included one, maybe) where they can.
            Self::Keepalived(path) => crate::keepalived::load(path).map_err(|e| match e.at {
                Some(_) => e.into(),
                None => anyhow::Error::new(e).context(format!(
                    "invalid keepalived configuration {}",
                    path.display()
                )),
            }),
        }
    }

    /// Reads the configuration and logs its warnings.
    pub fn load(&self) -> Result<Config> {
        let loaded = self.read()?;
        for w in &loaded.warnings {
            log::warn!("{w}");
        }
        Ok(loaded.config)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    interface: Option<String>,
    metrics: Option<std::net::SocketAddr>,
    #[serde(default)]
    timeouts: TimeoutsEntry,
    #[serde(default, rename = "service")]
    services: Vec<ServiceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    protocol: Protocol,
    address: SocketAddr,
    #[serde(default = "default_scheduler", with = "scheduler_name")]
    scheduler: Scheduler,
    #[serde(default)]
    sched_flags: Vec<SchedFlagName>,
    persistence_timeout: Option<u32>,
    persistence_granularity: Option<ClientMask>,
    #[serde(default, rename = "real_server")]
    real_servers: Vec<RealServerEntry>,
    quorum: Option<u32>,
    hysteresis: Option<u32>,
    quorum_up: Option<String>,
    quorum_down: Option<String>,
    sorry_server: Option<RealServerAddr>,
    #[serde(default)]
    alpha: bool,
    #[serde(default)]
    omega: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RealServerEntry {
    address: RealServerAddr,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    upper_threshold: u32,
    #[serde(default)]
    lower_threshold: u32,
    #[serde(default)]
    inhibit_on_failure: bool,
    notify_up: Option<String>,
    notify_down: Option<String>,
    #[serde(default)]
    health_check: health_check::Checks,
}

/// `[timeouts]`: 0 or absent keeps IPVS's default.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsEntry {
    #[serde(default)]
    tcp: u32,
    #[serde(default)]
    tcpfin: u32,
    #[serde(default)]
    udp: u32,
}

/// One of ipvsadm's scheduler flag names, of any scheduler.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct SchedFlagName(SchedFlag);

impl TryFrom<String> for SchedFlagName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        SchedFlag::from_name(&s).map(Self).ok_or_else(|| {
            let known: Vec<&str> = model::SCHED_FLAGS.iter().map(|f| f.name).collect();
            format!("unknown scheduler flag {s:?} (one of {})", known.join(", "))
        })
    }
}

/// `IP` or `IP:port`, IPv6 as `2001:db8::2`, `[2001:db8::2]` or `[2001:db8::2]:80`.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct RealServerAddr(IpAddr, Option<u16>);

impl TryFrom<String> for RealServerAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Self(a.ip(), Some(a.port())));
        }
        let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
        bare.unwrap_or(&s)
            .parse()
            .map(|ip| Self(ip, None))
            .map_err(|_| format!("invalid real server address {s:?}"))
    }
}

const fn default_scheduler() -> Scheduler {
    DEFAULT_SCHEDULER
}

const fn default_weight() -> u32 {
    1
}

impl Config {
    /// Reads and validates a configuration file; the error names the file and, for syntax and
    /// type errors, the line and column.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid configuration {}", path.display()))
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self> {
        let file: File = toml::from_str(text)?;
        let mut services = Vec::with_capacity(file.services.len());
        let mut health = Vec::new();
        for mut s in file.services {
            let addr = ServiceAddr {
                protocol: s.protocol,
                addr: s.address.ip(),
                port: s.address.port(),
            };
            let mut dests = Vec::with_capacity(s.real_servers.len());
            let mut checked = Vec::new();
            for mut r in std::mem::take(&mut s.real_servers) {
                if let Some(port) = r.address.1.filter(|p| *p != addr.port) {
                    bail!(
                        "service {addr}: real server {}:{port}: direct routing keeps the service port {}",
                        r.address.0,
                        addr.port
                    );
                }
                let ip = r.address.0;
                checked.extend(
                    r.health(ip)
                        .with_context(|| format!("service {addr}: real server {ip}"))?,
                );
                dests.push(DestSpec {
                    addr: r.address.0,
                    weight: r.weight,
                    u_threshold: r.upper_threshold,
                    l_threshold: r.lower_threshold,
                });
            }
            health.extend(
                s.health(addr, checked)
                    .with_context(|| format!("service {addr}"))?,
            );
            let mut flags = 0;
            for SchedFlagName(f) in &s.sched_flags {
                if f.scheduler != s.scheduler {
                    bail!(
                        "service {addr}: incompatible scheduler flag `{}' (for {}, not {})",
                        f.name,
                        f.scheduler.name(),
                        s.scheduler.name()
                    );
                }
                flags |= f.bit;
            }
            if s.persistence_granularity.is_some() && s.persistence_timeout.is_none() {
                bail!("service {addr}: persistence_granularity needs persistence_timeout");
            }
            let persistence = s.persistence_timeout.map(|timeout| Persistence {
                timeout,
                netmask: s
                    .persistence_granularity
                    .unwrap_or(ClientMask::host(addr.addr)),
            });
            services.push(ServiceSpec {
                addr,
                scheduler: s.scheduler,
                flags,
                persistence,
                dests,
            });
        }
        model::validate(&services)?;
        let mut timeouts = Timeouts::default();
        timeouts.set(file.timeouts.tcp, file.timeouts.tcpfin, file.timeouts.udp);
        if let Some(m) = file.metrics.filter(|m| !m.ip().is_loopback()) {
            bail!("metrics = \"{m}\": the metrics endpoint must be on a loopback address");
        }
        Ok(Self {
            timeouts,
            interface: file.interface,
            metrics: file.metrics,
            services,
            health,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_services_with_defaults() {
        let c = Config::parse(
            r#"
interface = "eth0"
[[service]]
protocol = "tcp"
address = "10.0.0.100:80"
scheduler = "rr"
[[service.real_server]]
address = "10.0.0.2"
[[service.real_server]]
address = "10.0.0.3:80"
weight = 70000
[[service]]
protocol = "udp"
address = "10.0.0.100:53"
"#,
        )
        .unwrap();
        assert_eq!(c.interface.as_deref(), Some("eth0"));
        assert_eq!(c.services.len(), 2);
        assert_eq!(c.services[0].dests[0].weight, 1);
        assert_eq!(c.services[0].dests[1].weight, 70000, "as the kernel takes");
        assert_eq!(c.services[0].scheduler, Scheduler::Rr);
        assert_eq!(c.services[1].scheduler, Scheduler::Wlc);
        assert_eq!(c.services[1].addr.protocol, Protocol::Udp);
        assert_eq!(c.services[0].persistence, None);
        assert_eq!(c.timeouts, Timeouts::default());
    }

    #[test]
    fn persistence_and_timeouts() {
        let c = Config::parse(
            "[timeouts]\ntcpfin = 5\n[[service]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\npersistence_timeout = 60\npersistence_granularity = \"255.255.255.0\"\n",
        )
        .unwrap();
        let p = c.services[0].persistence.unwrap();
        assert_eq!(
            (p.timeout, p.netmask.to_string().as_str()),
            (60, "255.255.255.0")
        );
        assert_eq!(c.timeouts.of(lb_common::state::ConnState::FinWait), 5);
        assert_eq!(c.timeouts.of(lb_common::state::ConnState::Established), 900);
        let e = Config::parse(
            "[[service]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\npersistence_granularity = \"255.0.0.0\"\n",
        );
        assert!(format!("{:#}", e.unwrap_err()).contains("needs persistence_timeout"));
    }

    #[test]
    fn errors_name_the_line() {
        let e =
            Config::parse("[[service]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1\"\n").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("line 3"), "{msg}");
        let e = Config::parse("[[service]]\nprotocol = \"sctp\"\naddress = \"10.0.0.1:1\"\n")
            .unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
        let e = Config::parse("bogus = 1\n").unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let c = Config::parse(include_str!("../../dist/xdpvsd.toml")).unwrap();
        assert_eq!(c.services.len(), 2);
        assert_eq!(c.metrics, Some("127.0.0.1:9469".parse().unwrap()));
        assert_eq!(c.services[0].dests[1].u_threshold, 10000);
        let [h] = &c.health[..] else {
            panic!("{:?}", c.health)
        };
        assert_eq!((h.quorum, h.real_servers.len()), (3, 2));
        let e = Config::parse("metrics = \"0.0.0.0:9469\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("loopback"), "{e:#}");
    }

    #[test]
    fn health_checks_with_keepalived_defaults() {
        use crate::health::model::{CheckKind, HttpProtocol};
        use std::time::Duration;
        let c = Config::parse(
            r#"
[[service]]
protocol = "tcp"
address = "10.0.0.100:80"
quorum = 2
hysteresis = 1
sorry_server = "10.0.0.9:80"
quorum_down = "page"
[[service.real_server]]
address = "10.0.0.2"
inhibit_on_failure = true
notify_down = "rs down"
[service.real_server.health_check]
type = "TCP_CHECK"
[[service.real_server]]
address = "10.0.0.3"
[[service.real_server.health_check]]
type = "HTTP_GET"
delay_loop = 1.5
nb_get_retry = 3
http_protocol = "1.1"
url = [{ path = "/health", status_code = [200, "300-302"], digest = "ABC" }, { path = "/" }]
[[service.real_server.health_check]]
type = "MISC_CHECK"
misc_path = "/bin/check 10.0.0.3"
misc_dynamic = true
warmup = 0
[[service.real_server]]
address = "10.0.0.4"
"#,
        )
        .unwrap();
        let [h] = &c.health[..] else {
            panic!("{:?}", c.health)
        };
        assert_eq!((h.quorum, h.hysteresis), (2, 1));
        assert_eq!(h.sorry_server, Some("10.0.0.9".parse().unwrap()));
        assert_eq!(h.quorum_down.as_deref(), Some("page"));
        assert!(!h.alpha && !h.omega);
        assert_eq!(h.real_servers.len(), 2, "10.0.0.4 has no checker");
        let (rs2, rs3) = (&h.real_servers[0], &h.real_servers[1]);
        assert!(rs2.inhibit_on_failure && !rs3.inhibit_on_failure);
        let tcp = &rs2.checks[0];
        assert_eq!(tcp.kind, CheckKind::Tcp);
        assert_eq!(
            tcp.timing(),
            (
                Duration::from_secs(60),
                Duration::from_secs(5),
                1,
                Duration::from_secs(1),
                None
            )
        );
        let http = &rs3.checks[0];
        assert_eq!(
            (http.delay_loop, http.retry),
            (Duration::from_millis(1500), 3)
        );
        assert_eq!(http.delay_before_retry, Duration::from_secs(3));
        let CheckKind::Http(get) = &http.kind else {
            panic!("{http:?}")
        };
        assert!(!get.tls && get.protocol == HttpProtocol::Http11);
        assert_eq!(get.urls[0].status_codes, [(200, 200), (300, 302)]);
        assert_eq!(get.urls[0].digest.as_deref(), Some("abc"));
        assert_eq!(get.urls[1].status_codes, [(200, 299)]);
        let misc = &rs3.checks[1];
        assert_eq!((misc.retry, misc.warmup), (0, Some(Duration::ZERO)));
        assert!(
            matches!(&misc.kind, CheckKind::Misc(m) if m.dynamic && m.path == "/bin/check 10.0.0.3")
        );
    }

    #[test]
    fn health_check_errors_name_the_place() {
        let base = "[[service]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n[[service.real_server]]\naddress = \"10.0.0.2\"\n[[service.real_server.health_check]]\n";
        for (extra, message) in [
            ("type = \"PING_CHECK\"\n", "line 7"),
            (
                "type = \"TCP_CHECK\"\nretries = 2\n",
                "unknown field `retries`",
            ),
            (
                "type = \"HTTP_GET\"\n",
                "real server 10.0.0.2: an HTTP_GET or SSL_GET needs at least one url",
            ),
            (
                "type = \"TCP_CHECK\"\nmisc_path = \"x\"\n",
                "belong to MISC_CHECK",
            ),
            ("type = \"TCP_CHECK\"\ndelay_loop = -1\n", "delay_loop = -1"),
            (
                "type = \"TCP_CHECK\"\ndelay_loop = 0\n",
                "delay_loop must be above 0",
            ),
            (
                "type = \"TCP_CHECK\"\nconnect_timeout = 1e19\n",
                "connect_timeout must be at most 86400 s",
            ),
            (
                "type = \"SSL_GET\"\nurl = [{ path = \"/\", status_code = [\"299-200\"] }]\n",
                "not a code or a range",
            ),
        ] {
            let e = format!(
                "{:#}",
                Config::parse(&format!("{base}{extra}")).unwrap_err()
            );
            assert!(e.contains(message), "{extra}: {e}");
        }
    }

    #[test]
    fn refuses_port_translation_and_bad_schedulers() {
        let base = "[[service]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n";
        let e = Config::parse(&format!(
            "{base}[[service.real_server]]\naddress = \"10.0.0.2:8080\"\n"
        ));
        assert!(format!("{:#}", e.unwrap_err()).contains("direct routing"));
        let e = format!(
            "{:#}",
            Config::parse(&format!("{base}scheduler = \"nope\"\n")).unwrap_err()
        );
        assert!(
            e.contains("line 4") && e.contains("scheduler \"nope\" not found"),
            "{e}"
        );
        let e = Config::parse(&format!(
            "{base}scheduler = \"sh\"\nsched_flags = [\"sh-pork\"]\n"
        ));
        assert!(format!("{:#}", e.unwrap_err()).contains("line 5"));
        let ok = Config::parse(&format!(
            "{base}scheduler = \"sh\"\nsched_flags = [\"sh-port\", \"sh-fallback\"]\n"
        ));
        assert_eq!(ok.unwrap().services[0].flags, 3);
        let ok = Config::parse(&format!(
            "{base}scheduler = \"mh\"\nsched_flags = [\"mh-port\", \"mh-fallback\"]\n"
        ));
        assert_eq!(ok.unwrap().services[0].flags, 3);
        for (scheduler, flag) in [("mh", "sh-port"), ("sh", "mh-fallback"), ("wlc", "sh-port")] {
            let e = Config::parse(&format!(
                "{base}scheduler = \"{scheduler}\"\nsched_flags = [\"{flag}\"]\n"
            ));
            let e = format!("{:#}", e.unwrap_err());
            assert!(
                e.contains(&format!("incompatible scheduler flag `{flag}'")),
                "{e}"
            );
        }
        let e = Config::parse(&format!("{base}sched_flags = [\"sh-port\"]\n"));
        assert!(
            format!("{:#}", e.unwrap_err()).contains("not wlc"),
            "the default scheduler takes no flags"
        );
    }
}
