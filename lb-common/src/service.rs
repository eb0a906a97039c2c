//! Virtual services: the (VIP, protocol, port) triples the data path balances.

use crate::{addr::Addr, sched::Scheduler};

/// Key of a virtual service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Virtual address.
    pub addr: Addr,
    /// Port, network byte order.
    pub port: u16,
    /// IP protocol number ([`crate::ip_proto`]).
    pub proto: u8,
    /// Explicit padding.
    pub _pad: u8,
}

/// A virtual service as the data path needs it. Written only by the daemon, whole, after the
/// list and table it points at: a changed service gets a new list region and a new table
/// region, so a packet sees either the old service with its old list and table or the new one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Index of the service in the per-service arrays.
    pub id: u32,
    /// Start of the service's real server list in the list pool (SERVICE_DESTS).
    pub dests_offset: u32,
    /// Number of real servers in the service's list.
    pub dest_count: u32,
    /// Largest weight in the list (wrr).
    pub max_weight: u32,
    /// Greatest common divisor of the positive weights (wrr).
    pub weight_gcd: u32,
    /// Start of the service's bucket table (sh, dh, mh) in the table pool.
    pub table_offset: u32,
    /// Number of buckets in that table.
    pub table_size: u32,
    /// Persistence timeout in seconds (0: not persistent).
    pub persist_timeout: u32,
    /// Persistence mask of the client address ([`Addr::v4_netmask`], [`Addr::v6_prefix`]).
    pub persist_mask: Addr,
    /// The scheduler ([`Scheduler`] as u8).
    pub scheduler: u8,
    /// Scheduler flags ([`crate::sched::flags`]).
    pub flags: u8,
    /// Explicit padding.
    pub _pad: [u8; 2],
}

impl Service {
    /// The service's scheduler, if the value is one the data path knows.
    pub fn scheduler(&self) -> Option<Scheduler> {
        Scheduler::from_u8(self.scheduler)
    }
}

/// Scheduler state the data path keeps per service; the daemon moves it on
/// ([`SchedState::dests_changed`]) whenever it rewrites the service.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedState {
    /// List position of the last rr/wrr pick (`u32::MAX`: none yet).
    pub last: u32,
    /// wrr's current weight (0: start a new round).
    pub cw: u32,
}

impl SchedState {
    /// The state once the service's real servers changed (`svc`: its new value): rr and wrr
    /// restart at the list head, and wrr's current weight carries over as IPVS carries it.
    pub const fn dests_changed(self, svc: &Service) -> Self {
        Self {
            last: u32::MAX,
            cw: crate::sched::wrr_dests_changed(self.cw, svc.max_weight, svc.weight_gcd),
        }
    }
}

impl Default for SchedState {
    fn default() -> Self {
        Self {
            last: u32::MAX,
            cw: 0,
        }
    }
}
