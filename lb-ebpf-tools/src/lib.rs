//! XDP helper programs for the xdpvs test beds and benchmark, built into their own object
//! (`xdpvs-tools.bpf.o`) so that the daemon's object holds only what forwards traffic: a
//! pass-through for veth peers, the MAC-swap baseline, and the live-frame generator and sink.
#![no_std]

mod generator;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// Passes every packet: attached to a veth's peer so that native XDP_TX on the veth works.
#[xdp]
pub fn xdpvs_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Swaps the Ethernet addresses and sends the frame back: the benchmark baseline.
#[xdp]
pub fn xdpvs_mac_swap(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    let p = start as *mut [u8; 6];
    // SAFETY: the 12 address bytes are inside the packet.
    unsafe {
        let dst = p.read_unaligned();
        let src = p.add(1).read_unaligned();
        p.write_unaligned(src);
        p.add(1).write_unaligned(dst);
    }
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
