//! The xdpvs XDP program: IPVS-style direct routing. Packets for a configured virtual service
//! keep their IP packet untouched and leave towards the chosen real server with only the
//! Ethernet addresses rewritten; everything else goes to the kernel unchanged.
#![no_std]

mod conns;
mod conntrack;
mod maps;
mod packet;
mod schedule;
mod shared;
mod verdict;

use aya_ebpf::{helpers::generated::bpf_ktime_get_ns, macros::xdp, programs::XdpContext};
use conntrack::{Conn, Lookup};
use lb_common::{
    config::Director,
    event::{Event, EventKind},
    flow::FlowKey,
    sched::Addresses,
    service::{Service, ServiceKey},
};
use maps::{DEST_STATS, DIRECTOR, EVENTS, SERVICE_STATS, SERVICES, account, count};
use packet::Packet;
use verdict::{DropReason, Verdict};

#[xdp]
pub fn xdpvs(ctx: XdpContext) -> u32 {
    let verdict = balance(&ctx);
    count(verdict.counter());
    verdict.action()
}

/// Reports a decision when the daemon asked for debug events.
#[inline(always)]
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

/// Parse, service lookup, connection, rewrite.
#[inline(always)]
fn balance(ctx: &XdpContext) -> Verdict {
    let Some(pkt) = Packet::parse(ctx) else {
        return Verdict::Pass;
    };
    let Some(svc) = service(&pkt.key) else {
        return Verdict::Pass;
    };
    let Some(director) = DIRECTOR.get(0) else {
        return Verdict::Pass;
    };
    let conn = match connect(&pkt, &svc) {
        Ok(conn) => conn,
        Err(reason) => {
            if let Some(kind) = reason.event() {
                report(director, kind, svc.id, u32::MAX, &pkt.key);
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
            &pkt.key,
        );
    }
    if !conn.dest.is_resolved() {
        return Verdict::Drop(DropReason::DestUnresolved);
    }
    pkt.set_macs(&conn.dest.mac, &director.mac);
    account(&SERVICE_STATS, svc.id, pkt.ip_len, conn.new);
    account(&DEST_STATS, conn.dest_id, pkt.ip_len, conn.new);
    Verdict::Forward
}

/// The virtual service a packet of flow `key` is for.
#[inline(always)]
fn service(key: &FlowKey) -> Option<Service> {
    let key = ServiceKey {
        addr: key.dst_addr,
        port: key.dst_port,
        proto: key.proto as u8,
        _pad: 0,
    };
    // SAFETY: SERVICES is not preallocated: the daemon replaces a service by inserting a new
    // element, and the old one is freed only after an RCU grace period, which this run is
    // inside. The element is never written in place, so the copy is the whole old or new
    // service.
    unsafe { SERVICES.get(key) }.copied()
}

/// The packet's connection: its flow's live entry, else a new one on the real server the
/// scheduler assigns.
#[inline(always)]
fn connect(pkt: &Packet, svc: &Service) -> Result<Conn, DropReason> {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let stale = match conntrack::lookup(&pkt.key, svc.id) {
        Lookup::Found(entry) => return Ok(entry.track(pkt.tcp_flags, now)),
        Lookup::Stale => true,
        Lookup::Missing => false,
    };
    let client = Addresses {
        src_addr: u32::from_be(pkt.key.src_addr),
        src_port: u16::from_be(pkt.key.src_port),
        dst_addr: u32::from_be(pkt.key.dst_addr),
    };
    let dest = schedule::assign(svc, &client, pkt.key.src_addr, now).ok_or(DropReason::NoDest)?;
    conntrack::create(&pkt.key, svc.id, dest, pkt.tcp_flags, now, stale)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
