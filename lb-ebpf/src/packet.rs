//! A checked, zero-copy view of the headers the balancer reads: Ethernet (with at most one
//! 802.1Q tag), IPv4 without options and unfragmented, then TCP or UDP. Every read is bounds
//! checked against `data_end` so that the verifier accepts it; anything else yields `None`.

use aya_ebpf::programs::XdpContext;
use lb_common::{flow::FlowKey, ip_proto};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const IPV4_HLEN: usize = 20;
const TCP_HLEN: usize = 20;
const UDP_HLEN: usize = 8;

/// A pointer to `len` bytes at `offset`, if they lie inside the packet.
#[inline(always)]
fn bytes_at(ctx: &XdpContext, offset: usize, len: usize) -> Option<*mut u8> {
    let start = ctx.data();
    if start + offset + len > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut u8)
}

#[inline(always)]
fn read_u16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let p = bytes_at(ctx, offset, 2)?;
    // SAFETY: bytes_at checked that two bytes are inside the packet.
    Some(u16::from_be_bytes(unsafe {
        (p as *const [u8; 2]).read_unaligned()
    }))
}

/// The parsed headers of a packet the balancer may handle.
pub struct Packet {
    /// The Ethernet header's address fields, writable.
    pub macs: *mut [u8; 12],
    /// The flow, in network byte order.
    pub key: FlowKey,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// IP total length: the byte count IPVS reports.
    pub ip_len: u16,
}

impl Packet {
    /// Parses the packet, or `None` when it is not one the balancer handles.
    #[inline(always)]
    pub fn parse(ctx: &XdpContext) -> Option<Self> {
        let macs = bytes_at(ctx, 0, ETH_HLEN)? as *mut [u8; 12];
        let mut l3 = ETH_HLEN;
        let mut ether_type = read_u16(ctx, 12)?;
        if ether_type == ETH_P_8021Q {
            ether_type = read_u16(ctx, ETH_HLEN + 2)?;
            l3 += VLAN_HLEN;
        }
        if ether_type != ETH_P_IP {
            return None;
        }
        let ip = bytes_at(ctx, l3, IPV4_HLEN)?;
        // SAFETY: the 20 header bytes are inside the packet.
        let hdr = unsafe { (ip as *const [u8; IPV4_HLEN]).read_unaligned() };
        // Version 4 without options only.
        if hdr[0] != 0x45 {
            return None;
        }
        let ip_len = u16::from_be_bytes([hdr[2], hdr[3]]);
        // A fragment (more-fragments flag or an offset) cannot be matched to its flow.
        if u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff != 0 {
            return None;
        }
        let frame_len = ctx.data_end() - ctx.data();
        if (ip_len as usize) < IPV4_HLEN || l3 + ip_len as usize > frame_len {
            return None;
        }
        let proto = hdr[9];
        let l4 = l3 + IPV4_HLEN;
        let (ports, tcp_flags) = match proto {
            ip_proto::TCP => {
                if (ip_len as usize) < IPV4_HLEN + TCP_HLEN {
                    return None;
                }
                let tcp = bytes_at(ctx, l4, TCP_HLEN)?;
                // SAFETY: the 20 TCP header bytes are inside the packet.
                let t = unsafe { (tcp as *const [u8; TCP_HLEN]).read_unaligned() };
                ([t[0], t[1], t[2], t[3]], t[13])
            }
            ip_proto::UDP => {
                if (ip_len as usize) < IPV4_HLEN + UDP_HLEN {
                    return None;
                }
                let udp = bytes_at(ctx, l4, UDP_HLEN)?;
                // SAFETY: the 8 UDP header bytes are inside the packet.
                let u = unsafe { (udp as *const [u8; UDP_HLEN]).read_unaligned() };
                ([u[0], u[1], u[2], u[3]], 0)
            }
            _ => return None,
        };
        let key = FlowKey {
            src_addr: u32::from_ne_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]),
            dst_addr: u32::from_ne_bytes([hdr[16], hdr[17], hdr[18], hdr[19]]),
            src_port: u16::from_ne_bytes([ports[0], ports[1]]),
            dst_port: u16::from_ne_bytes([ports[2], ports[3]]),
            proto: proto as u32,
        };
        Some(Self {
            macs,
            key,
            tcp_flags,
            ip_len,
        })
    }

    /// Addresses the frame from `src` to `dst`, leaving everything after the MACs untouched.
    #[inline(always)]
    pub fn set_macs(&self, dst: &[u8; 6], src: &[u8; 6]) {
        let mut m = [0u8; 12];
        m[..6].copy_from_slice(dst);
        m[6..].copy_from_slice(src);
        // SAFETY: `macs` points at the 12 checked address bytes of the Ethernet header.
        unsafe { self.macs.write_unaligned(m) };
    }
}
