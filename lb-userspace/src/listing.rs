//! The daemon's state as xdpvsadm lists it, and ipvsadm's text formats for it.

use std::{fmt::Write, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::model::ServiceAddr;

/// IPVS version printed in the header, for scripts that parse ipvsadm's output.
pub const IPVS_VERSION: &str = "1.2.1";

/// Everything `-L` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    /// Capacity of the connection table (ipvsadm's `size=`).
    pub flow_table_size: u32,
    /// Services in configuration order.
    pub services: Vec<ServiceStatus>,
    /// Global counters by name.
    pub counters: Vec<(String, u64)>,
}

/// One virtual service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Identity.
    pub addr: ServiceAddr,
    /// Scheduler name.
    pub scheduler: String,
    /// Scheduler flags ([`lb_common::sched::flags`]).
    pub flags: u8,
    /// Persistence, if any.
    pub persistence: Option<crate::model::Persistence>,
    /// Real servers in list order.
    pub dests: Vec<DestStatus>,
    /// Traffic of the whole service.
    pub traffic: TrafficStatus,
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

/// One real server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DestStatus {
    /// Address.
    pub addr: Ipv4Addr,
    /// Port (the service's, in direct routing).
    pub port: u16,
    /// Weight.
    pub weight: u32,
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// The resolved MAC, if any.
    pub mac: Option<String>,
    /// Traffic sent to this real server.
    pub traffic: TrafficStatus,
}

/// `ipvsadm -Ln`.
pub fn numeric(l: &Listing) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "IP Virtual Server version {IPVS_VERSION} (size={})",
        l.flow_table_size
    );
    out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
    out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    for s in &l.services {
        let a = &s.addr;
        let _ = write!(
            out,
            "{}  {}:{} {}",
            a.protocol.label(),
            a.addr,
            a.port,
            s.scheduler
        );
        let flags: Vec<&str> = crate::model::SCHED_FLAG_NAMES
            .iter()
            .filter(|(_, bit)| s.flags & bit != 0)
            .map(|(name, _)| *name)
            .collect();
        if !flags.is_empty() {
            let _ = write!(out, " ({})", flags.join(","));
        }
        if let Some(p) = s.persistence {
            let _ = write!(out, " persistent {}", p.timeout);
            if p.netmask != Ipv4Addr::BROADCAST {
                let _ = write!(out, " mask {}", p.netmask);
            }
        }
        out.push('\n');
        for d in &s.dests {
            let _ = writeln!(
                out,
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                format!("{}:{}", d.addr, d.port),
                "Route",
                d.weight,
                d.active,
                d.inactive
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    #[test]
    fn numeric_matches_ipvsadm_byte_for_byte() {
        let dest = |last: u8, active, inactive| DestStatus {
            addr: Ipv4Addr::new(192, 168, 88, last),
            port: 80,
            weight: 1,
            active,
            inactive,
            mac: None,
            traffic: TrafficStatus::default(),
        };
        let l = Listing {
            flow_table_size: 4096,
            services: vec![ServiceStatus {
                addr: ServiceAddr {
                    protocol: Protocol::Tcp,
                    addr: Ipv4Addr::new(192, 168, 88, 20),
                    port: 80,
                },
                scheduler: "rr".into(),
                flags: 0,
                persistence: None,
                dests: vec![dest(14, 3, 0), dest(15, 0, 12)],
                traffic: TrafficStatus::default(),
            }],
            counters: vec![],
        };
        let expected = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  192.168.88.20:80 rr\n\
\x20 -> 192.168.88.14:80             Route   1      3          0         \n\
\x20 -> 192.168.88.15:80             Route   1      0          12        \n";
        assert_eq!(numeric(&l), expected);
    }

    #[test]
    fn numeric_prints_flags_and_persistence() {
        let l = Listing {
            flow_table_size: 4096,
            services: vec![ServiceStatus {
                addr: ServiceAddr {
                    protocol: Protocol::Udp,
                    addr: Ipv4Addr::new(10, 0, 0, 3),
                    port: 53,
                },
                scheduler: "sh".into(),
                flags: 3,
                persistence: Some(crate::model::Persistence {
                    timeout: 20,
                    netmask: Ipv4Addr::new(255, 255, 255, 0),
                }),
                dests: vec![],
                traffic: TrafficStatus::default(),
            }],
            counters: vec![],
        };
        assert_eq!(
            numeric(&l).lines().nth(3),
            Some("UDP  10.0.0.3:53 sh (sh-fallback,sh-port) persistent 20 mask 255.255.255.0")
        );
    }
}
