//! The xdpvs XDP program: IPVS-style direct routing. Packets for a configured virtual service
//! keep their IP packet untouched and leave towards the chosen real server with only the
//! Ethernet addresses rewritten; everything else goes to the kernel unchanged.
#![no_std]

mod maps;
mod packet;
mod schedule;

use core::sync::atomic::{AtomicU32, Ordering};

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST, xdp_action},
    helpers::generated::bpf_ktime_get_ns,
    macros::xdp,
    programs::XdpContext,
};
use lb_common::{
    config::Director,
    dest::DestConns,
    event::{Event, EventKind},
    flow::{Flow, FlowKey},
    sched::Addresses,
    service::ServiceKey,
    state::ConnState,
    stats::Global,
};
use maps::{
    DEST_CONNS, DEST_STATS, DESTS, DIRECTOR, EVENTS, FLOWS, SERVICE_STATS, SERVICES, account, count,
};
use packet::Packet;

const EEXIST: i32 = 17;

#[xdp]
pub fn xdpvs(ctx: XdpContext) -> u32 {
    let action = balance(&ctx);
    // Drops are counted where they happen, by cause.
    match action {
        xdp_action::XDP_PASS => count(Global::Passed),
        xdp_action::XDP_TX => count(Global::Forwarded),
        _ => {}
    }
    action
}

/// Moves one connection between a dest's ActiveConn and InActConn as its state changes.
#[inline(always)]
fn recount(conns: *mut DestConns, from: Option<ConnState>, to: ConnState) {
    if from.map(ConnState::is_active) == Some(to.is_active()) {
        return;
    }
    // SAFETY: `conns` is a map value; the counters are only changed atomically.
    unsafe {
        if let Some(from) = from {
            AtomicU32::from_ptr((*conns).counter_mut(from.is_active()))
                .fetch_sub(1, Ordering::Relaxed);
        }
        AtomicU32::from_ptr((*conns).counter_mut(to.is_active())).fetch_add(1, Ordering::Relaxed);
    }
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

#[inline(always)]
fn balance(ctx: &XdpContext) -> u32 {
    let Some(pkt) = Packet::parse(ctx) else {
        return xdp_action::XDP_PASS;
    };
    let service_key = ServiceKey {
        addr: pkt.key.dst_addr,
        port: pkt.key.dst_port,
        proto: pkt.key.proto as u8,
        _pad: 0,
    };
    // SAFETY: service values are replaced whole by the daemon, never freed under us.
    let Some(svc) = (unsafe { SERVICES.get(service_key) }) else {
        return xdp_action::XDP_PASS;
    };
    let Some(director) = DIRECTOR.get(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };

    let found = FLOWS.get_ptr_mut(pkt.key);
    let existing = found.and_then(|flow| {
        // SAFETY: a map value pointer from the lookup above.
        let f = unsafe { &mut *flow };
        let dest = DESTS.get(f.dest)?;
        // A flow whose real server was removed (slot emptied or reused) is scheduled anew.
        (dest.generation == f.dest_generation && f.service == svc.id).then_some((f, dest))
    });
    let (dest_id, dest, new) = match existing {
        Some((flow, dest)) => {
            let from = flow.state();
            let to = from.after_tcp(pkt.tcp_flags);
            if to != from {
                flow.state = to as u32;
                if let Some(conns) = DEST_CONNS.get_ptr_mut(flow.dest) {
                    recount(conns, Some(from), to);
                }
            }
            flow.last_seen_ns = now;
            (flow.dest, dest, false)
        }
        None => {
            let client = Addresses {
                src_addr: u32::from_be(pkt.key.src_addr),
                src_port: u16::from_be(pkt.key.src_port),
                dst_addr: u32::from_be(pkt.key.dst_addr),
            };
            let Some(dest_id) = schedule::assign(svc, &client, pkt.key.src_addr, now) else {
                count(Global::NoDest);
                report(director, EventKind::NoDest, svc.id, u32::MAX, &pkt.key);
                return xdp_action::XDP_DROP;
            };
            let Some(dest) = DESTS.get(dest_id) else {
                return xdp_action::XDP_DROP;
            };
            let state = Flow::initial_state(pkt.key.proto).after_tcp(pkt.tcp_flags);
            let flow = Flow {
                last_seen_ns: now,
                dest: dest_id,
                dest_generation: dest.generation,
                service: svc.id,
                state: state as u32,
            };
            // A stale entry is overwritten; otherwise only a missing key is filled, so that
            // when two CPUs race on a flow's first packets one choice wins.
            let flags = if found.is_some() {
                BPF_ANY
            } else {
                BPF_NOEXIST
            };
            match FLOWS.insert(pkt.key, flow, flags as u64) {
                Ok(()) => {
                    if let Some(conns) = DEST_CONNS.get_ptr_mut(dest_id) {
                        recount(conns, None, state);
                    }
                    report(director, EventKind::Scheduled, svc.id, dest_id, &pkt.key);
                }
                // Another CPU created the flow first: the next packet follows its choice.
                Err(e) if -e == EEXIST => {}
                Err(_) => {
                    count(Global::FlowTableFull);
                    report(
                        director,
                        EventKind::FlowTableFull,
                        svc.id,
                        dest_id,
                        &pkt.key,
                    );
                    return xdp_action::XDP_DROP;
                }
            }
            (dest_id, dest, true)
        }
    };
    if !dest.is_resolved() {
        count(Global::NoDest);
        return xdp_action::XDP_DROP;
    }
    pkt.set_macs(&dest.mac, &director.mac);
    account(&SERVICE_STATS, svc.id, pkt.ip_len, new);
    account(&DEST_STATS, dest_id, pkt.ip_len, new);
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
