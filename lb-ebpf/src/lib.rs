//! The xdpvs XDP program: IPVS-style direct routing. Packets for a configured virtual service
//! keep their IP packet untouched and leave towards the chosen real server with only the
//! Ethernet addresses rewritten, and so do the later fragments of their datagrams and the ICMP
//! errors about their flows; everything else goes to the kernel unchanged.
#![no_std]

mod conns;
mod conntrack;
mod expire;
mod frag;
mod icmp;
mod maps;
mod packet;
mod schedule;
mod shared;
mod stamp;
mod verdict;

use aya_ebpf::{helpers::generated::bpf_ktime_get_ns, macros::xdp, programs::XdpContext};
use conntrack::{Conn, Lookup};
use lb_common::{
    config::Director,
    dest::Dest,
    event::{Event, EventKind},
    flow::FlowKey,
    ipv4::{self, Fragment},
    ipv6,
    service::{Service, ServiceKey},
};
use maps::{DEST_STATS, DIRECTOR, EVENTS, FAMILIES, SERVICE_STATS, SERVICES, account, count};
use packet::{Ip, Parsed};
use verdict::{DropReason, Forwarded, Verdict};

/// The attached program: IPv4, and IPv6 frames on to [`xdpvs6`].
#[xdp]
pub fn xdpvs(ctx: XdpContext) -> u32 {
    run::<false>(&ctx)
}

/// IPv6, reached from [`xdpvs`] by a tail call: the same steps, verified on their own.
#[xdp]
pub fn xdpvs6(ctx: XdpContext) -> u32 {
    run::<true>(&ctx)
}

#[inline(always)]
fn run<const V6: bool>(ctx: &XdpContext) -> u32 {
    let verdict = balance::<V6>(ctx);
    count(verdict.counter());
    verdict.action()
}

/// Reports a decision when the daemon asked for debug events. Out of line: the event is built
/// in its own frame, not in the program's, whose stack the deepest scheduler call chain adds to.
#[inline(never)]
fn report(director: &Director, kind: EventKind, service: u32, dest: u32, key: &FlowKey) {
    if director.debug != 0 {
        let event = Event {
            kind: kind as u32,
            service,
            dest,
            src_addr: key.src_addr,
            src_port: key.src_port,
            proto: key.proto as u16,
        };
        // A full ring loses the event, never the packet.
        let _ = EVENTS.output::<Event>(&event, 0);
    }
}

/// Parse, then the packet's kind: a later fragment, an ICMP message, a flow's packet.
#[inline(always)]
fn balance<const V6: bool>(ctx: &XdpContext) -> Verdict {
    let ip = match Ip::parse::<V6>(ctx) {
        Parsed::Ip(ip) => ip,
        Parsed::Ipv6 => {
            // SAFETY: a tail call ends this program on success; on failure (no IPv6 program
            // in the slot) it returns, and the frame passes.
            unsafe { FAMILIES.tail_call(ctx, lb_common::program_names::IPV6_SLOT) };
            return Verdict::PASS;
        }
        Parsed::Other => return Verdict::PASS,
    };
    let Some(director) = DIRECTOR.get(0) else {
        return Verdict::PASS;
    };
    match (ip.fragment, ip.proto, V6) {
        (Fragment::Later, _, _) => frag::follow(ctx, ip, director),
        (_, ipv4::ICMP, false) | (_, ipv6::ICMPV6, true) => icmp::forward::<V6>(ctx, ip, director),
        _ => balance_flow(ctx, ip, director),
    }
}

/// Service lookup, connection, rewrite; a first fragment's datagram is recorded for the
/// fragments that follow.
#[inline(always)]
fn balance_flow(ctx: &XdpContext, ip: &mut Ip, director: &Director) -> Verdict {
    let Some(tcp_flags) = ip.ports(ctx) else {
        return Verdict::PASS;
    };
    let Some(svc) = service(&ip.key) else {
        return Verdict::PASS;
    };
    let conn = match connect(&ip.key, tcp_flags, svc) {
        Ok(conn) => conn,
        Err(reason) => {
            if let Some(kind) = reason.event() {
                report(director, kind, svc.id, u32::MAX, &ip.key);
            }
            return Verdict::Drop(reason);
        }
    };
    if conn.new {
        report(
            director,
            EventKind::Scheduled,
            svc.id,
            conn.dest_id,
            &ip.key,
        );
    }
    if let Err(reason) = send(ctx, ip, director, svc.id, conn.dest_id, conn.dest, conn.new) {
        return Verdict::Drop(reason);
    }
    if ip.fragment == Fragment::First {
        frag::record(ip, svc.id, &conn);
    }
    Verdict::Forward(Forwarded::Flow)
}

/// Readdresses the frame of `ip` from the director to real server `dest_id` and counts it
/// for the service and the real server (with a new connection when `new`).
#[inline(always)]
pub(crate) fn send(
    ctx: &XdpContext,
    ip: &Ip,
    director: &Director,
    service: u32,
    dest_id: u32,
    dest: &Dest,
    new: bool,
) -> Result<(), DropReason> {
    if !dest.is_resolved() {
        return Err(DropReason::DestUnresolved);
    }
    packet::set_macs(ctx, &dest.mac, &director.mac);
    account(&SERVICE_STATS, service, ip.ip_len, new);
    account(&DEST_STATS, dest_id, ip.ip_len, new);
    Ok(())
}

/// The virtual service a packet of flow `key` is for: as IPVS's `ip_vs_service_find`, the
/// service of its exact address and port, else the VIP's port-0 service (all ports; the daemon
/// installs one only when persistent). Out of line: its frame, where the two lookups' keys
/// differ, ends at the return, so the verifier goes on from one state, not one per lookup.
#[inline(never)]
pub(crate) fn service(key: &FlowKey) -> Option<&'static Service> {
    let mut key = ServiceKey {
        addr: key.dst_addr,
        port: key.dst_port,
        proto: key.proto as u8,
        _pad: 0,
    };
    // SAFETY: SERVICES is not preallocated: the daemon replaces a service by inserting a new
    // element, and the old one is freed only after an RCU grace period, which this run is
    // inside. The element is never written in place, so for the whole run the reference reads
    // the old or the new service, whole.
    if let Some(svc) = unsafe { SERVICES.get(key) } {
        return Some(svc);
    }
    key.port = 0;
    // SAFETY: as above.
    unsafe { SERVICES.get(key) }
}

/// The packet's connection: its flow's live entry, else a new one on the real server the
/// scheduler assigns (over a stale entry this CPU claims).
#[inline(always)]
fn connect(key: &FlowKey, tcp_flags: u8, svc: &Service) -> Result<Conn, DropReason> {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let (tracked, replace) = match conntrack::lookup(key, svc.id) {
        Lookup::Found(entry) => (entry.track(tcp_flags, now), false),
        Lookup::Orphaned => return Err(DropReason::DestRemoved),
        Lookup::Stale(stale) => (None, stale.claim()),
        Lookup::Missing => (None, false),
    };
    // A flow that expired under this packet starts anew once the expiry removed it.
    let conn = match tracked {
        Some(conn) => conn,
        None => {
            let dest = schedule::assign(svc, key, now).ok_or(DropReason::NoDest)?;
            conntrack::create(key, svc.id, dest, tcp_flags, now, replace)?
        }
    };
    if conn.established {
        schedule::assure_template(svc, key);
    }
    Ok(conn)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
