//! Shared between the xdpvs XDP program and its control plane: the layout of every BPF map
//! key and value, and the pure logic the data path runs (connection states, scheduler
//! comparisons) so that the host can unit-test exactly what the kernel executes.
#![cfg_attr(not(test), no_std)]

pub mod addr;
pub mod config;
pub mod dest;
pub mod event;
pub mod expiry;
pub mod flow;
pub mod frag;
pub mod generator;
pub mod ipv4;
pub mod ipv6;
pub mod maglev;
pub mod sched;
pub mod service;
pub mod state;
pub mod stats;
pub mod tools;

/// Names of the BPF maps, shared by the program and its loader.
pub mod map_names {
    /// Virtual services: [`crate::service::ServiceKey`] -> [`crate::service::Service`].
    pub const SERVICES: &str = "SERVICES";
    /// Pool of real server lists: slot `dests_offset + i` -> dest id. The daemon places each
    /// service's list in a free region, like the tables.
    pub const SERVICE_DESTS: &str = "SERVICE_DESTS";
    /// Per-service scheduler state written by the data path.
    pub const SERVICE_SCHED: &str = "SERVICE_SCHED";
    /// Pool of sh/dh/mh bucket tables: slot `table_offset + bucket` -> dest id
    /// (`u32::MAX` = empty). The daemon places each table in a free region.
    pub const SERVICE_TABLES: &str = "SERVICE_TABLES";
    /// Real servers by dest id: [`crate::dest::Dest`].
    pub const DESTS: &str = "DESTS";
    /// Connections counted in per dest id by the data path: [`crate::dest::DestConns`].
    pub const DEST_CONNS: &str = "DEST_CONNS";
    /// Connections counted out (expired) per dest id by the daemon: [`crate::dest::DestConns`].
    pub const DEST_RELEASED: &str = "DEST_RELEASED";
    /// Connection table: [`crate::flow::FlowKey`] -> [`crate::flow::Flow`].
    pub const FLOWS: &str = "FLOWS";
    /// Persistence templates: [`crate::flow::PersistKey`] -> [`crate::flow::Persist`].
    pub const PERSIST: &str = "PERSIST";
    /// Single-entry idle timeouts per connection state: [`crate::state::Timeouts`].
    pub const TIMEOUTS: &str = "TIMEOUTS";
    /// Persistence of each service id, for expiry: [`crate::expiry::TemplateRule`].
    pub const TEMPLATE_RULES: &str = "TEMPLATE_RULES";
    /// lblc/lblcr cache: [`crate::sched::locality::LocalityKey`] ->
    /// [`crate::sched::locality::Locality`].
    pub const LOCALITY: &str = "LOCALITY";
    /// Fragment table: [`crate::frag::FragKey`] -> [`crate::frag::FragOwner`].
    pub const FRAGS: &str = "FRAGS";
    /// Per-CPU traffic counters per service id.
    pub const SERVICE_STATS: &str = "SERVICE_STATS";
    /// Per-CPU traffic counters per dest id.
    pub const DEST_STATS: &str = "DEST_STATS";
    /// Per-CPU global counters, indexed by [`crate::stats::Global`].
    pub const GLOBAL_STATS: &str = "GLOBAL_STATS";
    /// Single-entry director configuration: [`crate::config::Director`].
    pub const DIRECTOR: &str = "DIRECTOR";
    /// Ring buffer of [`crate::event::Event`]s (not pinned: each daemon reads its own).
    pub const EVENTS: &str = "EVENTS";
    /// Program array: slot [`crate::program_names::IPV6_SLOT`] holds the IPv6 balancer, which
    /// the IPv4 one passes IPv6 frames to. Pinned, as the link is: the kernel empties a program
    /// array once no file holds it, and the attached program outlives the daemon.
    pub const FAMILIES: &str = "FAMILIES";
    /// Every pinned map, for pinning and cleaning up.
    pub const ALL: [&str; 18] = [
        SERVICES,
        SERVICE_DESTS,
        SERVICE_SCHED,
        SERVICE_TABLES,
        DESTS,
        DEST_CONNS,
        DEST_RELEASED,
        FLOWS,
        PERSIST,
        TIMEOUTS,
        TEMPLATE_RULES,
        LOCALITY,
        FRAGS,
        SERVICE_STATS,
        DEST_STATS,
        GLOBAL_STATS,
        DIRECTOR,
        FAMILIES,
    ];
}

/// Names of the programs in the daemon's object (the helpers' are in [`tools`]).
pub mod program_names {
    /// The load balancer: the program attached to the interface, which balances IPv4 and
    /// passes IPv6 frames on to [`LOAD_BALANCER_V6`] by a tail call. Each family is a program
    /// of its own so that the verifier checks each within its budget.
    pub const LOAD_BALANCER: &str = "xdpvs";
    /// The IPv6 load balancer, reached from [`LOAD_BALANCER`] only.
    pub const LOAD_BALANCER_V6: &str = "xdpvs6";
    /// Where [`LOAD_BALANCER_V6`] sits in [`crate::map_names::FAMILIES`].
    pub const IPV6_SLOT: u32 = 0;
    /// The sweeper: removes idle flows and templates (the daemon runs it once a second).
    pub const EXPIRE: &str = "xdpvs_expire";
}

/// Most virtual services the maps hold.
pub const MAX_SERVICES: u32 = 1024;
/// Most real servers one virtual service may have.
pub const MAX_DESTS_PER_SERVICE: u32 = 1024;
/// Most real servers over all services (dest ids are below this).
pub const MAX_DESTS: u32 = 131_072;
/// Entries in the real server list pool shared by all services.
pub const LIST_POOL_SIZE: u32 = MAX_SERVICES * MAX_DESTS_PER_SERVICE;
/// Entries in the bucket table pool shared by all services.
pub const TABLE_POOL_SIZE: u32 = 1 << 22;
/// Default size of the connection table.
pub const DEFAULT_MAX_FLOWS: u32 = 1 << 20;
/// Default size of the persistence template table (one template per client network of a
/// persistent service).
pub const DEFAULT_MAX_TEMPLATES: u32 = 1 << 16;

/// IP protocol numbers the data path balances.
pub mod ip_proto {
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` for every map key and value, so that user space can read and write them.
    use crate::{
        config, dest, event, expiry, flow, frag, generator, sched::locality, service, state, stats,
    };
    macro_rules! pod {
        ($($t:ty),*) => { $(unsafe impl aya::Pod for $t {})* };
    }
    pod!(
        config::Director,
        generator::Generator,
        event::Event,
        dest::Dest,
        dest::DestConns,
        expiry::TemplateRule,
        state::Timeouts,
        flow::FlowKey,
        flow::Flow,
        flow::PersistKey,
        flow::Persist,
        locality::LocalityKey,
        locality::Locality,
        frag::FragKey,
        frag::FragOwner,
        service::ServiceKey,
        service::Service,
        service::SchedState,
        stats::Traffic
    );
}
