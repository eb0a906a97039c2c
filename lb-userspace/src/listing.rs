//! The daemon's state as xdpvsadm lists it (also its `--json` form); the text formats are in
//! [`crate::ipvsadm_format`].

use std::net::{IpAddr, SocketAddr};

use lb_common::sched::Scheduler;
use serde::{Deserialize, Serialize};

use crate::model::{Protocol, ServiceAddr, ServiceSpec, scheduler_name};

/// Everything `-L` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    /// Capacity of the flow table (JSON only: ipvsadm's `size=` is IPVS's
    /// [`CONN_TAB_SIZE`](crate::ipvsadm_format::CONN_TAB_SIZE)).
    pub flow_table_size: u32,
    /// Services in configuration order.
    pub services: Vec<ServiceStatus>,
    /// Global counters by name.
    pub counters: Vec<(String, u64)>,
    /// Traffic of every service since the last `-Z` of everything, also of services since
    /// removed or zeroed alone: IPVS's totals (/proc/net/ip_vs_stats).
    #[serde(default)]
    pub total: TrafficStatus,
    /// The director pair's state, when xdpvsd follows keepalived (not in ipvsadm's text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<crate::ha::HaStatus>,
}

impl Listing {
    /// The listing `services` would have once installed, before any traffic (for `--check`).
    pub fn configured(services: &[ServiceSpec]) -> Self {
        let services = services
            .iter()
            .map(|s| ServiceStatus {
                addr: s.addr,
                scheduler: s.scheduler,
                flags: s.flags,
                persistence: s.persistence,
                dests: s
                    .dests
                    .iter()
                    .map(|d| DestStatus {
                        addr: d.addr,
                        port: s.addr.port,
                        weight: d.weight,
                        u_threshold: d.u_threshold,
                        l_threshold: d.l_threshold,
                        persistent: 0,
                        active: 0,
                        inactive: 0,
                        mac: None,
                        traffic: TrafficStatus::default(),
                        rates: Rates::default(),
                    })
                    .collect(),
                traffic: TrafficStatus::default(),
                rates: Rates::default(),
                health: None,
            })
            .collect();
        Self {
            flow_table_size: 0,
            services,
            counters: Vec::new(),
            total: TrafficStatus::default(),
            ha: None,
        }
    }
}

/// One virtual service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Identity.
    pub addr: ServiceAddr,
    /// Scheduler, serialised as its ipvsadm name.
    #[serde(with = "scheduler_name")]
    pub scheduler: Scheduler,
    /// Scheduler flags ([`lb_common::sched::flags`]).
    pub flags: u8,
    /// Persistence, if any.
    pub persistence: Option<crate::model::Persistence>,
    /// Real servers in list order.
    pub dests: Vec<DestStatus>,
    /// Traffic of the whole service.
    pub traffic: TrafficStatus,
    /// Its recent rates.
    pub rates: Rates,
    /// Health checking, when the service has checked real servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ServiceHealthStatus>,
}

/// The health of a service's checked real servers, as the monitor sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceHealthStatus {
    /// Whether the live weight meets the quorum (if not, the sorry server, if any, serves).
    pub quorum: bool,
    /// Every checked real server, listed or removed.
    pub real_servers: Vec<RealServerHealthStatus>,
}

/// One checked real server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RealServerHealthStatus {
    /// Address.
    pub addr: IpAddr,
    /// Whether all its checkers pass.
    pub up: bool,
    /// Why it is in this state: the last transition's checker and its finding.
    pub reason: String,
    /// Seconds since it entered this state.
    pub since_secs: u64,
    /// Transitions since the daemon started.
    pub transitions: u64,
    /// Duration of each checker's last attempt in seconds (none before the first).
    pub latencies: Vec<Option<f64>>,
}

/// Traffic counters of a service or a real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficStatus {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
}

impl From<lb_common::stats::Traffic> for TrafficStatus {
    fn from(t: lb_common::stats::Traffic) -> Self {
        Self {
            conns: t.conns,
            packets: t.packets,
            bytes: t.bytes,
        }
    }
}

/// Rates over the last seconds, smoothed as IPVS's estimator does (`--rate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Packets per second.
    pub pps: u64,
    /// Bytes per second.
    pub bps: u64,
}

/// One real server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DestStatus {
    /// Address.
    pub addr: IpAddr,
    /// Port (the service's, in direct routing).
    pub port: u16,
    /// Weight.
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold.
    pub l_threshold: u32,
    /// Persistence templates pointing at it (`--persistent-conn`).
    pub persistent: u32,
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// The resolved MAC, if any.
    pub mac: Option<String>,
    /// Traffic sent to this real server.
    pub traffic: TrafficStatus,
    /// Its recent rates.
    pub rates: Rates,
}

/// One entry of the connection table (`-Lnc`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Protocol.
    pub protocol: Protocol,
    /// The client (port 0 for a persistence template).
    pub client: SocketAddr,
    /// The virtual service.
    pub service: SocketAddr,
    /// The real server.
    pub dest: SocketAddr,
    /// IPVS state name (`NONE` or `ASSURED` for a template).
    pub state: String,
    /// Seconds until it expires if idle.
    pub expires: u32,
}
