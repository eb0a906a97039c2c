//! ICMP errors about a flow to a virtual service (destination unreachable, among them
//! "fragmentation needed", and time exceeded), sent by a router to the VIP, go to the real
//! server that owns the flow, so that path-MTU discovery works through the director. The
//! quoted packet is that real server's reply (VIP:vport -> client:cport); the flow is its
//! reverse. The rest of ICMP, echo requests to the VIP among it, goes to the director's own
//! stack, as with IPVS (which does not balance echo: the director answers it).
//!
//! The ICMP checksum is not verified here: the message leaves unchanged and the real server's
//! stack verifies it, as it would have.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    config::Director,
    dest::Dest,
    flow::FlowKey,
    ip_proto,
    ipv4::{self, Fragment},
    sched::Scheduler,
    service::Service,
};

use crate::{
    conntrack::{self, Lookup},
    maps::DESTS,
    packet::{IPV4_HLEN, Ipv4, read},
    schedule,
    verdict::{Forwarded, Verdict},
};

/// Length of the ICMP header (type, code, checksum, 4 bytes of the type's own).
const ICMP_HLEN: usize = 8;
/// The quoted transport bytes an ICMP error carries at least (RFC 792): the ports.
const QUOTED_L4: usize = 8;

/// Forwards the ICMP message in `ip` to the real server of the flow it is about, if it is an
/// error about a flow of a service that has one.
#[inline(always)]
pub fn forward(ctx: &XdpContext, ip: &Ipv4, director: &Director) -> Verdict {
    let Some(key) = quoted_flow(ctx, ip) else {
        return Verdict::PASS;
    };
    let Some(svc) = crate::service(&key) else {
        return Verdict::PASS;
    };
    match owner(&key, svc) {
        Some((dest_id, dest)) => crate::send(ip, director, svc.id, dest_id, dest, false)
            .map_or(Verdict::PASS, |()| Verdict::Forward(Forwarded::IcmpError)),
        None => Verdict::PASS,
    }
}

/// The flow an ICMP error to the VIP is about: the quoted packet (an IPv4 header with its
/// options, then at least 8 bytes of TCP or UDP, all inside the outer packet) reversed.
#[inline(always)]
fn quoted_flow(ctx: &XdpContext, ip: &Ipv4) -> Option<FlowKey> {
    if ip.fragment != Fragment::Whole {
        return None;
    }
    let [icmp_type, ..] = read::<ICMP_HLEN>(ctx, ip.l4())?;
    if !ipv4::is_flow_error(icmp_type) {
        return None;
    }
    let quoted = ip.l4() + ICMP_HLEN;
    let q = read::<IPV4_HLEN>(ctx, quoted)?;
    let ihl = (q[0] & 0x0f) as usize * 4;
    if q[0] >> 4 != 4 || ihl < IPV4_HLEN {
        return None;
    }
    // A later fragment quotes no ports.
    if Fragment::of(u16::from_be_bytes([q[6], q[7]])) == Fragment::Later {
        return None;
    }
    let proto = q[9];
    if proto != ip_proto::TCP && proto != ip_proto::UDP {
        return None;
    }
    if (ip.ip_len as usize) < IPV4_HLEN + ICMP_HLEN + ihl + QUOTED_L4 {
        return None;
    }
    let [sport0, sport1, dport0, dport1, ..] = read::<QUOTED_L4>(ctx, quoted + ihl)?;
    let vip = u32::from_ne_bytes([q[12], q[13], q[14], q[15]]);
    // The error goes back to the address the quoted packet came from.
    if vip != ip.dst_addr {
        return None;
    }
    Some(FlowKey {
        src_addr: u32::from_ne_bytes([q[16], q[17], q[18], q[19]]),
        dst_addr: vip,
        src_port: u16::from_ne_bytes([dport0, dport1]),
        dst_port: u16::from_ne_bytes([sport0, sport1]),
        proto: proto as u32,
    })
}

/// The real server that owns flow `key` of `svc`: its entry's, or for a hashing scheduler
/// (sh, dh, mh) without one, the server the scheduler gives the client. Nothing is created.
#[inline(always)]
fn owner(key: &FlowKey, svc: &Service) -> Option<(u32, &'static Dest)> {
    if let Lookup::Found(entry) = conntrack::lookup(key, svc.id) {
        return Some(entry.dest());
    }
    if !svc.scheduler().is_some_and(Scheduler::is_hashing) {
        return None;
    }
    let id = schedule::pick_uncached(svc, &schedule::addresses(key))?;
    Some((id, DESTS.get(id)?))
}
