//! What the operator configured: virtual services and their real servers, with the map ids
//! the daemon gave them. Pure data; the daemon mirrors it into the maps.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use lb_common::{
    MAX_DESTS, MAX_DESTS_PER_SERVICE, MAX_SERVICES,
    addr::Addr,
    ip_proto, maglev,
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
    /// Virtual IP, either family.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
}

impl ServiceAddr {
    /// The key of this service in the SERVICES map.
    pub fn map_key(&self) -> ServiceKey {
        ServiceKey {
            addr: self.addr.into(),
            port: self.port.to_be(),
            proto: self.protocol.number(),
            _pad: 0,
        }
    }
}

impl fmt::Display for ServiceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = SocketAddr::new(self.addr, self.port);
        write!(f, "{} {endpoint}", self.protocol.label())
    }
}

/// The largest weight IPVS takes: the kernel keeps weights in an `int` and refuses negative
/// ones (`-ERANGE`); ipvsadm 1.31 checks `0..=INT_MAX`.
pub const MAX_WEIGHT: u32 = i32::MAX as u32;

/// A real server's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    /// Real server address, of the service's family.
    pub addr: IpAddr,
    /// Weight, 0..=[`MAX_WEIGHT`].
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold (0 = none).
    pub l_threshold: u32,
}

impl DestSpec {
    /// Whether IPVS takes the thresholds: the kernel refuses a lower threshold above the upper
    /// one (`-ERANGE`), also when the upper is 0 (none).
    pub const fn thresholds_ordered(&self) -> bool {
        self.l_threshold <= self.u_threshold
    }
}

/// A virtual service's settings and its real servers in list order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Identity.
    pub addr: ServiceAddr,
    /// Scheduler, serialised as its ipvsadm name.
    #[serde(with = "scheduler_name")]
    pub scheduler: Scheduler,
    /// Scheduler flags ([`sched::flags`]), of [`SCHED_FLAGS`] for the scheduler.
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
    /// Seconds (`-p` alone: 360, as ipvsadm 1.31).
    pub timeout: u32,
    /// The client network a template stands for (ipvsadm `-M`; default one address).
    pub netmask: ClientMask,
}

/// The part of a client's address its persistence template keeps, as ipvsadm's `-M` gives it:
/// a netmask for an IPv4 service, a prefix length for an IPv6 one. Serialised as ipvsadm
/// writes it (`"255.255.255.0"`, `64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClientMask {
    /// IPv4 netmask.
    Netmask(Ipv4Addr),
    /// IPv6 prefix length, 1..=128.
    Prefix(u8),
}

impl ClientMask {
    /// One client address alone: ipvsadm's default for a service of `addr`'s family.
    pub const fn host(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::Netmask(Ipv4Addr::BROADCAST),
            IpAddr::V6(_) => Self::Prefix(128),
        }
    }

    /// Whether it keeps the whole address (ipvsadm then prints no mask).
    pub fn is_host(&self) -> bool {
        matches!(self, Self::Netmask(Ipv4Addr::BROADCAST) | Self::Prefix(128))
    }

    /// Whether it is of `addr`'s family.
    pub const fn fits(&self, addr: IpAddr) -> bool {
        matches!(
            (self, addr),
            (Self::Netmask(_), IpAddr::V4(_)) | (Self::Prefix(1..=128), IpAddr::V6(_))
        )
    }

    /// The mask the maps apply to a client address.
    pub fn map_mask(&self) -> Addr {
        match *self {
            Self::Netmask(m) => Addr::v4_netmask(u32::from_ne_bytes(m.octets())),
            Self::Prefix(p) => Addr::v6_prefix(p),
        }
    }
}

impl std::str::FromStr for ClientMask {
    type Err = std::net::AddrParseError;

    /// A dotted netmask, or a prefix length.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<u8>() {
            Ok(prefix) => Ok(Self::Prefix(prefix)),
            Err(_) => s.parse().map(Self::Netmask),
        }
    }
}

impl fmt::Display for ClientMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Netmask(m) => m.fmt(f),
            Self::Prefix(p) => p.fmt(f),
        }
    }
}

/// ipvsadm's scheduler when none is given (`DEF_SCHED`).
pub const DEFAULT_SCHEDULER: Scheduler = Scheduler::Wlc;

/// A scheduler flag as ipvsadm names it (`-b`): IPVS's flag bits mean something to one
/// scheduler each, under a name of that scheduler's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedFlag {
    /// ipvsadm's name.
    pub name: &'static str,
    /// The scheduler that takes it.
    pub scheduler: Scheduler,
    /// Its bit ([`sched::flags`]).
    pub bit: u8,
}

/// Every scheduler flag, in the order ipvsadm prints them.
pub const SCHED_FLAGS: [SchedFlag; 4] = [
    SchedFlag {
        name: "sh-fallback",
        scheduler: Scheduler::Sh,
        bit: sched::flags::SH_FALLBACK,
    },
    SchedFlag {
        name: "sh-port",
        scheduler: Scheduler::Sh,
        bit: sched::flags::SH_PORT,
    },
    SchedFlag {
        name: "mh-fallback",
        scheduler: Scheduler::Mh,
        bit: sched::flags::SH_FALLBACK,
    },
    SchedFlag {
        name: "mh-port",
        scheduler: Scheduler::Mh,
        bit: sched::flags::SH_PORT,
    },
];

impl SchedFlag {
    /// The flag ipvsadm calls `name`, whatever its scheduler.
    pub fn from_name(name: &str) -> Option<Self> {
        SCHED_FLAGS.into_iter().find(|f| f.name == name)
    }

    /// The names of `flags` under `scheduler`, in ipvsadm's order.
    pub fn names(scheduler: Scheduler, flags: u8) -> impl Iterator<Item = &'static str> {
        SCHED_FLAGS
            .into_iter()
            .filter(move |f| f.scheduler == scheduler && flags & f.bit != 0)
            .map(|f| f.name)
    }

    /// The flag bits `scheduler` takes.
    pub fn mask(scheduler: Scheduler) -> u8 {
        SCHED_FLAGS
            .iter()
            .filter(|f| f.scheduler == scheduler)
            .fold(0, |mask, f| mask | f.bit)
    }
}

/// Serde for a [`Scheduler`] as its ipvsadm name (`"wlc"`), in the configuration file, the
/// control protocol, listings and the saved state (`#[serde(with = "scheduler_name")]`).
pub mod scheduler_name {
    use lb_common::sched::Scheduler;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes the name.
    pub fn serialize<S: Serializer>(s: &Scheduler, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(s.name())
    }

    /// Reads a name; an unknown one is an error that lists the known ones.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Scheduler, D::Error> {
        let name = String::deserialize(deserializer)?;
        Scheduler::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = Scheduler::ALL.iter().map(|s| s.name()).collect();
            D::Error::custom(format!(
                "scheduler {name:?} not found (one of {})",
                known.join(", ")
            ))
        })
    }
}

impl ServiceSpec {
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
            scheduler: self.scheduler as u8,
            persist_timeout: self.persistence.map_or(0, |p| p.timeout),
            persist_mask: self
                .persistence
                .map_or(ClientMask::host(self.addr.addr), |p| p.netmask)
                .map_mask(),
            flags: self.flags,
            _pad: [0; 2],
        }
    }

    /// Buckets in this service's table (0 for schedulers without one).
    pub fn table_size(&self) -> u32 {
        match self.scheduler {
            Scheduler::Sh | Scheduler::Dh => TABLE_SIZE,
            Scheduler::Mh => maglev::table_size(self.dests.len()),
            _ => 0,
        }
    }

    /// The bucket table (list positions) for table-driven schedulers.
    pub fn table(&self) -> Option<Vec<Option<u32>>> {
        let weights: Vec<u32> = self.dests.iter().map(|d| d.weight).collect();
        match self.scheduler {
            Scheduler::Sh => Some(sched::sh_table(&weights).to_vec()),
            Scheduler::Dh => Some(sched::dh_table(self.dests.len()).to_vec()),
            Scheduler::Mh => {
                let backends: Vec<_> = self
                    .dests
                    .iter()
                    .map(|d| (Addr::from(d.addr).fold(), self.addr.port, d.weight))
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
    DuplicateDest(ServiceAddr, IpAddr),
    /// A real server of the other address family (direct routing keeps the packet as it is).
    Family(ServiceAddr, IpAddr),
    /// A persistence mask of the other family, or an IPv6 prefix outside 1..=128.
    Mask(ServiceAddr, ClientMask),
    /// A weight above [`MAX_WEIGHT`].
    Weight(ServiceAddr, IpAddr),
    /// A lower threshold above the upper one.
    Thresholds(ServiceAddr, IpAddr),
    /// Port 0 (all ports) without persistence.
    ZeroPort(ServiceAddr),
    /// Scheduler flags the scheduler does not take.
    Flags(ServiceAddr, Scheduler, u8),
    /// More services, or real servers, than the maps hold.
    TooMany(&'static str, u32),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateService(s) => write!(f, "service {s} is defined twice"),
            Self::DuplicateDest(s, d) => write!(f, "service {s}: real server {d} is listed twice"),
            Self::Family(s, d) => write!(
                f,
                "service {s}: real server {d} is of the other address family"
            ),
            Self::Mask(s, m) => write!(f, "service {s}: illegal persistence mask {m}"),
            Self::Weight(s, d) => {
                write!(
                    f,
                    "service {s}: real server {d}: illegal weight (0..{MAX_WEIGHT})"
                )
            }
            Self::Thresholds(s, d) => write!(
                f,
                "service {s}: real server {d}: lower threshold above the upper one"
            ),
            Self::ZeroPort(s) => write!(
                f,
                "service {s}: zero port specified for non-persistent service"
            ),
            Self::Flags(s, sched, flags) => write!(
                f,
                "service {s}: scheduler {} does not take flags {flags:#04x}",
                sched.name()
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
        if a.port == 0 && svc.persistence.is_none() {
            return Err(SpecError::ZeroPort(a));
        }
        if svc.flags & !SchedFlag::mask(svc.scheduler) != 0 {
            return Err(SpecError::Flags(a, svc.scheduler, svc.flags));
        }
        if let Some(p) = svc.persistence.filter(|p| !p.netmask.fits(a.addr)) {
            return Err(SpecError::Mask(a, p.netmask));
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
            if d.addr.is_ipv4() != a.addr.is_ipv4() {
                return Err(SpecError::Family(a, d.addr));
            }
            if d.weight > MAX_WEIGHT {
                return Err(SpecError::Weight(a, d.addr));
            }
            if !d.thresholds_ordered() {
                return Err(SpecError::Thresholds(a, d.addr));
            }
        }
    }
    Ok(())
}

/// A TCP service on 10.0.0.1:`port` without persistence, its real servers of weight 1.
#[cfg(test)]
pub(crate) fn tcp_service(
    port: u16,
    scheduler: Scheduler,
    dests: impl IntoIterator<Item = IpAddr>,
) -> ServiceSpec {
    ServiceSpec {
        addr: ServiceAddr {
            protocol: Protocol::Tcp,
            addr: Ipv4Addr::new(10, 0, 0, 1).into(),
            port,
        },
        scheduler,
        flags: 0,
        persistence: None,
        dests: dests
            .into_iter()
            .map(|addr| DestSpec {
                addr,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(port: u16, scheduler: Scheduler, dests: &[&str]) -> ServiceSpec {
        tcp_service(port, scheduler, dests.iter().map(|d| d.parse().unwrap()))
    }

    #[test]
    fn accepts_a_good_set() {
        assert_eq!(
            validate(&[
                svc(80, Scheduler::Rr, &["10.0.0.2", "10.0.0.3"]),
                svc(443, Scheduler::Wlc, &[])
            ]),
            Ok(())
        );
    }

    #[test]
    fn refuses_bad_sets() {
        let a = svc(80, Scheduler::Rr, &[]).addr;
        assert_eq!(
            validate(&[svc(80, Scheduler::Rr, &[]), svc(80, Scheduler::Wlc, &[])]),
            Err(SpecError::DuplicateService(a))
        );
        assert_eq!(
            validate(&[svc(80, Scheduler::Rr, &["10.0.0.2", "10.0.0.2"])]),
            Err(SpecError::DuplicateDest(a, "10.0.0.2".parse().unwrap()))
        );
        let mut flagged = svc(80, Scheduler::Wlc, &[]);
        flagged.flags = sched::flags::SH_PORT;
        assert_eq!(
            validate(&[flagged]),
            Err(SpecError::Flags(a, Scheduler::Wlc, sched::flags::SH_PORT))
        );
        assert!(matches!(
            validate(&[svc(0, Scheduler::Rr, &[])]),
            Err(SpecError::ZeroPort(_))
        ));
        let mut heavy = svc(80, Scheduler::Rr, &["10.0.0.2"]);
        heavy.dests[0].weight = MAX_WEIGHT + 1;
        assert!(matches!(validate(&[heavy]), Err(SpecError::Weight(..))));
        let mut inverted = svc(80, Scheduler::Rr, &["10.0.0.2"]);
        inverted.dests[0].l_threshold = 5;
        assert!(matches!(
            validate(&[inverted]),
            Err(SpecError::Thresholds(..))
        ));
    }

    #[test]
    fn takes_what_ipvs_takes() {
        let mut all_ports = svc(0, Scheduler::Rr, &["10.0.0.2"]);
        all_ports.persistence = Some(Persistence {
            timeout: 360,
            netmask: ClientMask::Netmask(Ipv4Addr::BROADCAST),
        });
        let d = &mut all_ports.dests[0];
        (d.weight, d.u_threshold, d.l_threshold) = (70000, 20, 10);
        assert_eq!(validate(&[all_ports]), Ok(()));
    }

    #[test]
    fn map_value_carries_wrr_parameters_and_tables() {
        let mut s = svc(80, Scheduler::Wrr, &["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
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
        s.scheduler = Scheduler::Sh;
        assert_eq!(
            s.table().unwrap()[..9],
            [0, 0, 0, 0, 0, 0, 0, 0, 1].map(Some)
        );
        s.scheduler = Scheduler::Mh;
        let t = s.table().unwrap();
        assert_eq!((t.len(), s.map_value(0, 0, 0).table_size), (509, 509));
        assert!(
            t.iter().all(|p| matches!(p, Some(0) | Some(2))),
            "weight 0 gets no slot"
        );
    }

    #[test]
    fn sh_and_mh_take_their_own_flag_names_for_the_same_bits() {
        let both = sched::flags::SH_FALLBACK | sched::flags::SH_PORT;
        for (scheduler, names) in [
            (Scheduler::Sh, ["sh-fallback", "sh-port"]),
            (Scheduler::Mh, ["mh-fallback", "mh-port"]),
        ] {
            assert_eq!(SchedFlag::mask(scheduler), both);
            assert!(SchedFlag::names(scheduler, both).eq(names));
            let mut s = svc(80, scheduler, &["10.0.0.2"]);
            s.flags = both;
            assert_eq!(validate(&[s]), Ok(()), "{scheduler:?}");
        }
        assert_eq!(SchedFlag::mask(Scheduler::Dh), 0);
        assert_eq!(SchedFlag::names(Scheduler::Rr, both).count(), 0);
        let port = SchedFlag::from_name("mh-port").unwrap();
        assert_eq!(
            (port.scheduler, port.bit),
            (Scheduler::Mh, sched::flags::SH_PORT)
        );
        assert_eq!(SchedFlag::from_name("flag-1"), None);
    }

    #[test]
    fn the_scheduler_serialises_as_its_ipvsadm_name() {
        let s = svc(80, Scheduler::Mh, &[]);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["scheduler"], "mh");
        assert_eq!(serde_json::from_value::<ServiceSpec>(json).unwrap(), s);
        for scheduler in Scheduler::ALL {
            let mut json = serde_json::to_value(&s).unwrap();
            json["scheduler"] = scheduler.name().into();
            let back: ServiceSpec = serde_json::from_value(json).unwrap();
            assert_eq!(back.scheduler, scheduler);
        }
        let mut json = serde_json::to_value(&s).unwrap();
        json["scheduler"] = "fancy".into();
        let e = serde_json::from_value::<ServiceSpec>(json).unwrap_err();
        assert!(
            e.to_string().contains("scheduler \"fancy\" not found"),
            "{e}"
        );
    }

    #[test]
    fn map_key_is_network_order() {
        let k = svc(80, Scheduler::Rr, &[]).addr.map_key();
        assert_eq!(k.addr, Addr::from(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
        assert_eq!(k.proto, 6);
    }
}
