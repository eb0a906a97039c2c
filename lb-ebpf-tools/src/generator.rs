//! The benchmark's live-frame generator and its sink (see `lb_common::generator`).

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use lb_common::generator::{Counter, Generator, flow_source, ipv4_checksum};

#[map(name = "GENERATOR")]
static GENERATOR: Array<Generator> = Array::with_max_entries(1, 0);

#[map(name = "GENERATOR_COUNTERS")]
static GENERATOR_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Ethernet + IPv4 + the TCP ports: what the generator rewrites.
const REWRITTEN: usize = 14 + 20 + 2;

/// Adds one to `counter` and returns its previous value on this CPU.
#[inline(always)]
fn bump(counter: Counter) -> u64 {
    match GENERATOR_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        Some(c) => unsafe {
            let n = *c;
            *c = n + 1;
            n
        },
        None => 0,
    }
}

/// Turns the template frame (Ethernet, IPv4 without options, TCP) into the next flow's frame
/// and sends it: addresses, source address and port, IP checksum. Pages of live frames come
/// back from the director with its MACs, so every field that anyone rewrites is set each time.
#[xdp]
pub fn xdpvs_bench_gen(ctx: XdpContext) -> u32 {
    let Some(cfg) = GENERATOR.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let start = ctx.data();
    if start + REWRITTEN > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let flows = if cfg.flows == 0 { 1 } else { cfg.flows };
    let n = bump(Counter::Sent);
    let (addr, port) = flow_source((n % flows as u64) as u32);
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&cfg.dst_mac);
    macs[6..].copy_from_slice(&cfg.src_mac);
    // SAFETY: the first REWRITTEN bytes are inside the packet.
    unsafe {
        (start as *mut [u8; 12]).write_unaligned(macs);
        let ip = (start + 14) as *mut [u8; 20];
        let mut h = ip.read_unaligned();
        h[12..16].copy_from_slice(&addr.to_be_bytes());
        let sum = ipv4_checksum(&h, true);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        ip.write_unaligned(h);
        ((start + 34) as *mut [u8; 2]).write_unaligned(port.to_be_bytes());
    }
    xdp_action::XDP_TX
}

/// Counts and drops frames the director sent (source MAC = the generator's destination MAC);
/// passes anything else.
#[xdp]
pub fn xdpvs_bench_sink(ctx: XdpContext) -> u32 {
    let Some(cfg) = GENERATOR.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the 12 address bytes are inside the packet.
    let src = unsafe { ((start + 6) as *const [u8; 6]).read_unaligned() };
    if src != cfg.dst_mac {
        return xdp_action::XDP_PASS;
    }
    bump(Counter::Received);
    xdp_action::XDP_DROP
}
