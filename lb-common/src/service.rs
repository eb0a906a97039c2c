//! Virtual services: the (VIP, protocol, port) triples the data path balances.

use crate::sched::Scheduler;

/// Key of a virtual service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Virtual IPv4 address, network byte order.
    pub addr: u32,
    /// Port, network byte order.
    pub port: u16,
    /// IP protocol number ([`crate::ip_proto`]).
    pub proto: u8,
    /// Explicit padding.
    pub _pad: u8,
}

/// A virtual service as the data path needs it. Written only by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Index of the service in the per-service arrays.
    pub id: u32,
    /// Number of real servers in the service's list.
    pub dest_count: u32,
    /// The scheduler ([`Scheduler`] as u8).
    pub scheduler: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
}

impl Service {
    /// The service's scheduler, if the value is one the data path knows.
    pub fn scheduler(&self) -> Option<Scheduler> {
        Scheduler::from_u8(self.scheduler)
    }
}

/// Scheduler state the data path keeps per service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedState {
    /// List position of the last round-robin pick (`u32::MAX`: none yet).
    pub last: u32,
    /// Explicit padding.
    pub _pad: u32,
}
