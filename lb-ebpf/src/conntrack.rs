//! Connection tracking: each flow's entry in FLOWS, found for its packets or created for its
//! first one.
//!
//! FLOWS is a preallocated hash map. A pointer from a lookup stays valid memory for the whole
//! program run, but the entry may meanwhile be removed (by the sweeper, or replaced by another
//! CPU's claim of a stale flow) and its element reused at once for another flow: the kernel
//! puts a deleted element straight back on its free list (or keeps a replaced one as the CPU's
//! spare for its next update), without waiting for readers. So an entry's fixed fields are
//! read once, right after the lookup, and its changing fields (`state`, `last_seen_ns`) are
//! only accessed atomically. An entry is removed only by whoever claimed it (see [`Stamp`]),
//! and a packet's refresh and its claim exclude each other; what a reuse under a packet can
//! cost is that one packet's state change lands on the element's new flow.

use aya_ebpf::bindings::{BPF_EXIST, BPF_NOEXIST};
use lb_common::{
    dest::Dest,
    flow::{Flow, FlowKey},
    state::ConnState,
};

use crate::{
    conns,
    maps::{DESTS, FLOWS},
    shared::SharedU32,
    stamp::Stamp,
    verdict::DropReason,
};

/// The errno of an insert with BPF_NOEXIST that found the key.
pub const EEXIST: i32 = 17;

/// A packet's connection: the real server its flow is tracked to.
pub struct Conn {
    /// The real server's dest id.
    pub dest_id: u32,
    /// The real server.
    pub dest: &'static Dest,
    /// Whether this packet created the flow's entry.
    pub new: bool,
    /// Whether this packet took the flow to ESTABLISHED.
    pub established: bool,
}

/// What FLOWS holds for a packet's flow.
pub enum Lookup {
    /// A live entry.
    Found(Entry),
    /// An entry whose real server left (its slot was retired or given to another): as IPVS
    /// with `expire_nodest_conn=0`, the flow's packets are dropped until the entry expires.
    Orphaned,
    /// An entry of a service that was replaced: the flow is scheduled anew over it.
    Stale(Stale),
    /// No entry.
    Missing,
}

/// A live flow entry.
pub struct Entry {
    flow: *mut Flow,
    dest_id: u32,
    dest: &'static Dest,
}

/// An entry the flow's next packet replaces.
pub struct Stale {
    flow: *mut Flow,
    dest_id: u32,
    generation: u32,
}

/// Looks up the entry of flow `key` for service `service`.
#[inline(always)]
pub fn lookup(key: &FlowKey, service: u32) -> Lookup {
    let Some(flow) = FLOWS.get_ptr_mut(key) else {
        return Lookup::Missing;
    };
    // SAFETY: a FLOWS element (see the module comment); these fields are only written when an
    // element is filled for a flow, before it is linked into the table.
    let (dest_id, generation, owner) =
        unsafe { ((*flow).dest, (*flow).dest_generation, (*flow).service) };
    match DESTS.get(dest_id) {
        Some(dest) if dest.holds(generation) => {
            if owner == service {
                Lookup::Found(Entry {
                    flow,
                    dest_id,
                    dest,
                })
            } else {
                Lookup::Stale(Stale {
                    flow,
                    dest_id,
                    generation,
                })
            }
        }
        _ => Lookup::Orphaned,
    }
}

impl Stale {
    /// Claims the entry for replacement and counts its connection out of its real server.
    /// False if the sweeper or another CPU claimed it first.
    #[inline(always)]
    pub fn claim(self) -> bool {
        // SAFETY: a FLOWS element (see the module comment), whose value the map aligns to 8.
        let stamp = unsafe { Stamp::at(&raw mut (*self.flow).last_seen_ns) };
        if !stamp.claim(stamp.load()) {
            return false;
        }
        // SAFETY: as above; a stale entry is never tracked, so its state no longer changes.
        let state = unsafe { SharedU32::at(&raw mut (*self.flow).state) }.load();
        conns::release(self.dest_id, self.generation, Flow::decode_state(state));
        true
    }
}

impl Entry {
    /// The flow's real server: its dest id and value.
    #[inline(always)]
    pub fn dest(&self) -> (u32, &'static Dest) {
        (self.dest_id, self.dest)
    }

    /// Applies a packet with `tcp_flags` seen at `now` to the flow; `None` if the sweeper has
    /// claimed it (the flow expired: the packet starts a new one).
    #[inline(always)]
    pub fn track(self, tcp_flags: u8, now: u64) -> Option<Conn> {
        // SAFETY: a FLOWS element (see the module comment), whose value the map aligns to 8.
        let stamp = unsafe { Stamp::at(&raw mut (*self.flow).last_seen_ns) };
        // The refresh comes first: once it is in, the sweeper cannot claim the flow, so the
        // state change below is the one it counts the flow out with.
        if !stamp.refresh(now) {
            return None;
        }
        // SAFETY: as above.
        let state = unsafe { SharedU32::at(&raw mut (*self.flow).state) };
        let raw = state.load();
        let from = Flow::decode_state(raw);
        let to = from.after_tcp(tcp_flags);
        // Only the CPU that makes the change moves the connection between the counters. One
        // that loses to a concurrent change keeps it: the two packets were in flight together.
        let moved = to != from && state.compare_exchange(raw, to as u32);
        if moved {
            conns::recount(self.dest_id, Some(from), to);
        }
        Some(Conn {
            dest_id: self.dest_id,
            dest: self.dest,
            new: false,
            established: moved && to == ConnState::Established,
        })
    }
}

/// Creates the entry of flow `key` of `service` on real server `dest_id` for its first packet
/// (`tcp_flags`, seen at `now`), over the stale one this CPU claimed if `replace`. When another
/// CPU created the entry first, the packet follows that entry instead, and the flow is not new.
#[inline(always)]
pub fn create(
    key: &FlowKey,
    service: u32,
    dest_id: u32,
    tcp_flags: u8,
    now: u64,
    replace: bool,
) -> Result<Conn, DropReason> {
    let dest = DESTS.get(dest_id).ok_or(DropReason::NoDest)?;
    let state = Flow::initial_state(key.proto).after_tcp(tcp_flags);
    let flow = Flow {
        last_seen_ns: now,
        dest: dest_id,
        dest_generation: dest.generation,
        service,
        state: state as u32,
    };
    // Only a missing key is filled, so that of CPUs racing on a flow's first packets one wins;
    // a claimed entry only by its claimer (its other readers see it as gone).
    let flags = if replace { BPF_EXIST } else { BPF_NOEXIST };
    match FLOWS.insert(key, flow, flags.into()) {
        Ok(()) => {
            conns::recount(dest_id, None, state);
            Ok(Conn {
                dest_id,
                dest,
                new: true,
                established: state == ConnState::Established,
            })
        }
        Err(e) if -e == EEXIST => match lookup(key, service) {
            Lookup::Found(winner) => winner.track(tcp_flags, now).ok_or(DropReason::FlowVanished),
            Lookup::Orphaned | Lookup::Stale(_) | Lookup::Missing => Err(DropReason::FlowVanished),
        },
        Err(_) => Err(DropReason::FlowTableFull),
    }
}
