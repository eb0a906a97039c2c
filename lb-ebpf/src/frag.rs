//! IPv4 and IPv6 fragments of datagrams to a virtual service. The first fragment carries the ports and
//! is balanced as any packet of its flow; where it went is recorded under the datagram's
//! (source, destination, id, protocol) in FRAGS, and the later fragments, which carry no ports,
//! follow that record. A datagram is never split over two real servers: a later fragment whose
//! record names a server that left or has no MAC is dropped. A later fragment with no record
//! (its datagram is not for a service, or its first fragment has not arrived yet) goes to the
//! kernel, which reassembles the datagrams it owns and discards an incomplete one after
//! `ipfrag_time`; a service datagram whose fragments arrive out of order is therefore lost,
//! and its sender's retransmission decides.

use aya_ebpf::{bindings::BPF_ANY, programs::XdpContext};
use lb_common::{config::Director, frag::FragOwner};

use crate::{
    conntrack::Conn,
    maps::{DESTS, FRAGS},
    packet::Ip,
    verdict::{DropReason, Forwarded, Passed, Verdict},
};

/// Records that the datagram whose first fragment is `ip` went with `conn`, of `service`. Out
/// of line, as [`lookup`]: the datagram's key then lives in their frames, not in the
/// program's, whose stack the deepest scheduler call chain adds to.
#[inline(never)]
pub fn record(ip: &Ip, service: u32, conn: &Conn) {
    let owner = FragOwner {
        dest: conn.dest_id,
        dest_generation: conn.dest.generation,
        service,
    };
    // A failed insert (memory pressure) leaves the later fragments to the kernel.
    let _ = FRAGS.insert(ip.datagram(), owner, BPF_ANY.into());
}

/// Sends the later fragment `ip` where its datagram's first fragment went.
#[inline(always)]
pub fn follow(ctx: &XdpContext, ip: &Ip, director: &Director) -> Verdict {
    let mut owner = FragOwner::default();
    if !lookup(ip, &mut owner) {
        return Verdict::Pass(Passed::UntrackedFragment);
    }
    let sent = match DESTS.get(owner.dest) {
        Some(dest) if dest.holds(owner.dest_generation) => {
            crate::send(ctx, ip, director, owner.service, owner.dest, dest, false)
        }
        _ => Err(DropReason::DestUnresolved),
    };
    match sent {
        Ok(()) => Verdict::Forward(Forwarded::Fragment),
        Err(reason) => Verdict::Drop(reason),
    }
}

/// Copies the record of `ip`'s datagram into `owner`; false when there is none. Out of line,
/// as [`record`] (a BPF function returns one register, so the record comes back through
/// `owner`).
#[inline(never)]
fn lookup(ip: &Ip, owner: &mut FragOwner) -> bool {
    // SAFETY: a FRAGS element stays valid memory for the run. LRU maps are preallocated, so
    // an element evicted while it is copied can be refilled for another datagram at once and
    // the copy mix two records; but eviction takes the least recently used datagram, and one
    // whose fragments are arriving is the most recently used.
    match unsafe { FRAGS.get(ip.datagram()) } {
        Some(found) => {
            *owner = *found;
            true
        }
        None => false,
    }
}
