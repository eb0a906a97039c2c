//! What the operator configured: virtual services and their real servers, with the map ids
//! the daemon gave them. Pure data; the daemon mirrors it into the maps.

use std::{fmt, net::Ipv4Addr};

use lb_common::{
    MAX_DESTS, MAX_DESTS_PER_SERVICE, MAX_SERVICES, ip_proto, maglev,
    sched::{self, Scheduler, TABLE_SIZE},
    service::{Service, ServiceKey},
};
use serde::{Deserialize, Serialize};

/// A balanced transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (`-t`).
    Tcp,
    /// UDP (`-u`).
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => ip_proto::TCP,
            Self::Udp => ip_proto::UDP,
        }
    }

    /// The name ipvsadm prints in listings.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        }
    }
}

/// A virtual service's identity: protocol, VIP and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceAddr {
    /// Protocol.
    pub protocol: Protocol,
    /// Virtual IP.
    pub addr: Ipv4Addr,
    /// Port.
    pub port: u16,
}

impl ServiceAddr {
    /// The key of this service in the SERVICES map.
    pub fn map_key(&self) -> ServiceKey {
        ServiceKey {
            addr: u32::from_ne_bytes(self.addr.octets()),
            port: self.port.to_be(),
            proto: self.protocol.number(),
            _pad: 0,
        }
    }
}

impl fmt::Display for ServiceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:{}", self.protocol.label(), self.addr, self.port)
    }
}

/// A real server's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    /// Real server address.
    pub addr: Ipv4Addr,
    /// Weight, 0..=65535.
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold (0 = none).
    pub l_threshold: u32,
}

/// A virtual service's settings and its real servers in list order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Identity.
    pub addr: ServiceAddr,
    /// Scheduler name, one of [`Scheduler::ALL`].
    pub scheduler: String,
    /// Scheduler flags ([`sched::flags`]).
    pub flags: u8,
    /// Client persistence (ipvsadm `-p`, `-M`), if any.
    pub persistence: Option<Persistence>,
    /// Real servers.
    pub dests: Vec<DestSpec>,
}

/// Persistence settings: new connections of a client (address & netmask) go to the server of
/// its template while that server is usable; the template lives while it has connections and
/// `timeout` seconds after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistence {
    /// Seconds (ipvsadm's default 300).
    pub timeout: u32,
    /// Netmask applied to client addresses (default 255.255.255.255).
    pub netmask: Ipv4Addr,
}

/// ipvsadm's names of the scheduler flags (`-b`), with their bits.
pub const SCHED_FLAG_NAMES: [(&str, u8); 2] = [
    ("sh-fallback", sched::flags::SH_FALLBACK),
    ("sh-port", sched::flags::SH_PORT),
];

impl ServiceSpec {
    /// The scheduler, if the name is known.
    pub fn scheduler(&self) -> Option<Scheduler> {
        Scheduler::from_name(&self.scheduler)
    }

    /// The SERVICES map value for this service under `id`, its list at `dests_offset` in the
    /// list pool and its table at `table_offset` in the table pool (see [`ServiceSpec::table`]).
    pub fn map_value(&self, id: u32, dests_offset: u32, table_offset: u32) -> Service {
        let weights = || self.dests.iter().map(|d| d.weight);
        Service {
            id,
            dests_offset,
            dest_count: self.dests.len() as u32,
            max_weight: weights().max().unwrap_or(0),
            weight_gcd: sched::weight_gcd(weights()),
            table_offset,
            table_size: self.table_size(),
            scheduler: self.scheduler().map_or(u8::MAX, |s| s as u8),
            persist_timeout: self.persistence.map_or(0, |p| p.timeout),
            persist_mask: self
                .persistence
                .map_or(u32::MAX, |p| u32::from_ne_bytes(p.netmask.octets())),
            flags: self.flags,
            _pad: [0; 2],
        }
    }

    /// Buckets in this service's table (0 for schedulers without one).
    pub fn table_size(&self) -> u32 {
        match self.scheduler() {
            Some(Scheduler::Sh | Scheduler::Dh) => TABLE_SIZE,
            Some(Scheduler::Mh) => maglev::table_size(self.dests.len()),
            _ => 0,
        }
    }

    /// The bucket table (list positions) for table-driven schedulers.
    pub fn table(&self) -> Option<Vec<Option<u32>>> {
        let weights: Vec<u32> = self.dests.iter().map(|d| d.weight).collect();
        match self.scheduler()? {
            Scheduler::Sh => Some(sched::sh_table(&weights).to_vec()),
            Scheduler::Dh => Some(sched::dh_table(self.dests.len()).to_vec()),
            Scheduler::Mh => {
                let backends: Vec<_> = self
                    .dests
                    .iter()
                    .map(|d| (u32::from(d.addr), self.addr.port, d.weight))
                    .collect();
                let mut table = vec![None; self.table_size() as usize];
                maglev::populate(&backends, &mut table, &mut vec![0; backends.len()]);
                Some(table)
            }
            _ => None,
        }
    }
}

/// Why a set of services cannot be applied.
#[derive(Debug, PartialEq, Eq)]
pub enum SpecError {
    /// Two services with the same identity.
    DuplicateService(ServiceAddr),
    /// Two real servers with the same address in one service.
    DuplicateDest(ServiceAddr, Ipv4Addr),
    /// An unknown scheduler name.
    UnknownScheduler(ServiceAddr, String),
    /// A weight above 65535.
    Weight(ServiceAddr, Ipv4Addr),
    /// Port 0.
    ZeroPort(ServiceAddr),
    /// Scheduler flags the scheduler does not take.
    Flags(ServiceAddr, String),
    /// More services, or real servers, than the maps hold.
    TooMany(&'static str, u32),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateService(s) => write!(f, "service {s} is defined twice"),
            Self::DuplicateDest(s, d) => write!(f, "service {s}: real server {d} is listed twice"),
            Self::UnknownScheduler(s, n) => write!(f, "service {s}: scheduler {n:?} not found"),
            Self::Weight(s, d) => {
                write!(f, "service {s}: real server {d}: illegal weight (0..65535)")
            }
            Self::ZeroPort(s) => write!(
                f,
                "service {s}: zero port specified for non-persistent service"
            ),
            Self::Flags(s, n) => write!(
                f,
                "service {s}: scheduler {n} takes no sh-port/sh-fallback flags"
            ),
            Self::TooMany(what, max) => write!(f, "more than {max} {what}"),
        }
    }
}

impl std::error::Error for SpecError {}

/// Checks a whole set of services before anything is applied.
pub fn validate(services: &[ServiceSpec]) -> Result<(), SpecError> {
    if services.len() > MAX_SERVICES as usize {
        return Err(SpecError::TooMany("virtual services", MAX_SERVICES));
    }
    let total: usize = services.iter().map(|s| s.dests.len()).sum();
    if total > MAX_DESTS as usize {
        return Err(SpecError::TooMany("real servers in all", MAX_DESTS));
    }
    for (i, svc) in services.iter().enumerate() {
        let a = svc.addr;
        if services[..i].iter().any(|o| o.addr == a) {
            return Err(SpecError::DuplicateService(a));
        }
        if a.port == 0 {
            return Err(SpecError::ZeroPort(a));
        }
        match svc.scheduler() {
            None => return Err(SpecError::UnknownScheduler(a, svc.scheduler.clone())),
            Some(s) if svc.flags != 0 && s != Scheduler::Sh => {
                return Err(SpecError::Flags(a, svc.scheduler.clone()));
            }
            Some(_) => {}
        }
        if svc.dests.len() > MAX_DESTS_PER_SERVICE as usize {
            return Err(SpecError::TooMany(
                "real servers in one service",
                MAX_DESTS_PER_SERVICE,
            ));
        }
        for (j, d) in svc.dests.iter().enumerate() {
            if svc.dests[..j].iter().any(|o| o.addr == d.addr) {
                return Err(SpecError::DuplicateDest(a, d.addr));
            }
            if d.weight > 65535 {
                return Err(SpecError::Weight(a, d.addr));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(port: u16, sched: &str, dests: &[&str]) -> ServiceSpec {
        ServiceSpec {
            addr: ServiceAddr {
                protocol: Protocol::Tcp,
                addr: "10.0.0.1".parse().unwrap(),
                port,
            },
            scheduler: sched.into(),
            flags: 0,
            persistence: None,
            dests: dests
                .iter()
                .map(|d| DestSpec {
                    addr: d.parse().unwrap(),
                    weight: 1,
                    u_threshold: 0,
                    l_threshold: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn accepts_a_good_set() {
        assert_eq!(
            validate(&[
                svc(80, "rr", &["10.0.0.2", "10.0.0.3"]),
                svc(443, "wlc", &[])
            ]),
            Ok(())
        );
    }

    #[test]
    fn refuses_bad_sets() {
        let a = svc(80, "rr", &[]).addr;
        assert_eq!(
            validate(&[svc(80, "rr", &[]), svc(80, "wlc", &[])]),
            Err(SpecError::DuplicateService(a))
        );
        assert_eq!(
            validate(&[svc(80, "rr", &["10.0.0.2", "10.0.0.2"])]),
            Err(SpecError::DuplicateDest(a, "10.0.0.2".parse().unwrap()))
        );
        assert_eq!(
            validate(&[svc(80, "fancy", &[])]),
            Err(SpecError::UnknownScheduler(a, "fancy".into()))
        );
        assert!(matches!(
            validate(&[svc(0, "rr", &[])]),
            Err(SpecError::ZeroPort(_))
        ));
        let mut heavy = svc(80, "rr", &["10.0.0.2"]);
        heavy.dests[0].weight = 65536;
        assert!(matches!(validate(&[heavy]), Err(SpecError::Weight(..))));
    }

    #[test]
    fn map_value_carries_wrr_parameters_and_tables() {
        let mut s = svc(80, "wrr", &["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
        for (d, w) in s.dests.iter_mut().zip([8, 0, 6]) {
            d.weight = w;
        }
        let v = s.map_value(7, 0, 1);
        assert_eq!(
            (
                v.id,
                v.dest_count,
                v.max_weight,
                v.weight_gcd,
                v.table_offset,
                v.table_size
            ),
            (7, 3, 8, 2, 1, 0)
        );
        assert_eq!(v.scheduler, Scheduler::Wrr as u8);
        assert_eq!(s.table(), None);
        s.scheduler = "sh".into();
        assert_eq!(
            s.table().unwrap()[..9],
            [0, 0, 0, 0, 0, 0, 0, 0, 1].map(Some)
        );
        s.scheduler = "mh".into();
        let t = s.table().unwrap();
        assert_eq!((t.len(), s.map_value(0, 0, 0).table_size), (509, 509));
        assert!(
            t.iter().all(|p| matches!(p, Some(0) | Some(2))),
            "weight 0 gets no slot"
        );
    }

    #[test]
    fn map_key_is_network_order() {
        let k = svc(80, "rr", &[]).addr.map_key();
        assert_eq!(k.addr.to_ne_bytes(), [10, 0, 0, 1]);
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
        assert_eq!(k.proto, 6);
    }
}
