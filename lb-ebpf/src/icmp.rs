//! ICMP and ICMPv6 errors about a flow to a virtual service (destination unreachable, among
//! them "fragmentation needed", ICMPv6's "packet too big", and time exceeded), sent by a router
//! to the VIP, go to the real server that owns the flow, so that path-MTU discovery works
//! through the director. The quoted packet is that real server's reply (VIP:vport ->
//! client:cport); the flow is its reverse. The rest of ICMP and ICMPv6, echo requests to the
//! VIP and neighbour discovery among it, goes to the director's own stack, as with IPVS (which
//! does not balance echo: the director answers it).
//!
//! The ICMP checksum is not verified here: the message leaves unchanged and the real server's
//! stack verifies it, as it would have.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    addr::Addr,
    config::Director,
    dest::Dest,
    flow::FlowKey,
    ip_proto,
    ipv4::{self, Fragment},
    ipv6,
    sched::Scheduler,
    service::Service,
};

use crate::{
    conntrack::{self, Lookup},
    maps::DESTS,
    packet::{IPV4_HLEN, IPV6_HLEN, Ip, read, read_addr},
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
pub fn forward<const V6: bool>(ctx: &XdpContext, ip: &mut Ip, director: &Director) -> Verdict {
    if quoted_flow::<V6>(ctx, ip).is_none() {
        return Verdict::PASS;
    }
    let Some(svc) = crate::service(&ip.key) else {
        return Verdict::PASS;
    };
    match owner(&ip.key, svc) {
        Some((dest_id, dest)) => crate::send(ctx, ip, director, svc.id, dest_id, dest, false)
            .map_or(Verdict::PASS, |()| Verdict::Forward(Forwarded::IcmpError)),
        None => Verdict::PASS,
    }
}

/// Turns `ip.key` into the flow an ICMP or ICMPv6 error to the VIP is about: the quoted
/// packet (an IPv4 header with its options, or an IPv6 header followed at once by the
/// transport, then at least 8 bytes of TCP or UDP, all inside the outer packet) reversed. A
/// quoted IPv6 packet with extension headers is passed: an error about one is rare, and the
/// kernel then handles it.
#[inline(always)]
fn quoted_flow<const V6: bool>(ctx: &XdpContext, ip: &mut Ip) -> Option<()> {
    if ip.fragment != Fragment::Whole {
        return None;
    }
    let [icmp_type, ..] = read::<ICMP_HLEN>(ctx, ip.l4())?;
    let quoted = ip.l4() + ICMP_HLEN;
    let hlen = if V6 {
        if !ipv6::is_flow_error(icmp_type) {
            return None;
        }
        quoted_ipv6(ctx, quoted, &mut ip.key)?
    } else {
        if !ipv4::is_flow_error(icmp_type) {
            return None;
        }
        quoted_ipv4(ctx, quoted, &mut ip.key)?
    };
    if quoted + hlen + QUOTED_L4 > ip.end() {
        return None;
    }
    let key = &mut ip.key;
    if key.proto != ip_proto::TCP as u32 && key.proto != ip_proto::UDP as u32 {
        return None;
    }
    let [sport0, sport1, dport0, dport1, ..] = read::<QUOTED_L4>(ctx, quoted + hlen)?;
    key.src_port = u16::from_ne_bytes([dport0, dport1]);
    key.dst_port = u16::from_ne_bytes([sport0, sport1]);
    Some(())
}

/// Makes `key` (the error's own flow, to the VIP) the quoted packet's flow reversed, when the
/// quoted packet came from the VIP: its client and protocol, its ports not yet read.
#[inline(always)]
fn reverse(key: &mut FlowKey, src: Addr, dst: Addr, proto: u8) -> Option<()> {
    // The error goes back to the address the quoted packet came from.
    if src != key.dst_addr {
        return None;
    }
    key.src_addr = dst;
    key.proto = proto as u32;
    Some(())
}

/// Reverses the flow of the IPv4 header quoted at `at` into `key` ([`reverse`]): the header's
/// length; `None` for a later fragment (no ports).
#[inline(always)]
fn quoted_ipv4(ctx: &XdpContext, at: usize, key: &mut FlowKey) -> Option<usize> {
    let q = read::<IPV4_HLEN>(ctx, at)?;
    let ihl = (q[0] & 0x0f) as usize * 4;
    if q[0] >> 4 != 4 || ihl < IPV4_HLEN {
        return None;
    }
    if Fragment::of(u16::from_be_bytes([q[6], q[7]])) == Fragment::Later {
        return None;
    }
    reverse(
        key,
        Addr::v4(u32::from_ne_bytes([q[12], q[13], q[14], q[15]])),
        Addr::v4(u32::from_ne_bytes([q[16], q[17], q[18], q[19]])),
        q[9],
    )?;
    Some(ihl)
}

/// Reverses the flow of the IPv6 header quoted at `at` into `key` ([`reverse`]): the
/// header's length.
#[inline(always)]
fn quoted_ipv6(ctx: &XdpContext, at: usize, key: &mut FlowKey) -> Option<usize> {
    let [version, _, _, _, _, _, next, _] = read::<8>(ctx, at)?;
    if version >> 4 != 6 {
        return None;
    }
    reverse(key, read_addr(ctx, at + 8)?, read_addr(ctx, at + 24)?, next)?;
    Some(IPV6_HLEN)
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
