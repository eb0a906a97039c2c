//! A checked, zero-copy view of the headers the balancer reads: Ethernet (with at most one
//! 802.1Q tag), IPv4 without options and with a correct header checksum, then the transport
//! ports. Every read is bounds checked against `data_end` so that the verifier accepts it;
//! anything else yields `None`.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    flow::FlowKey,
    frag::FragKey,
    ip_proto,
    ipv4::{self, Fragment},
};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
/// Length of an IPv4 header without options.
pub const IPV4_HLEN: usize = 20;
const TCP_HLEN: usize = 20;
const UDP_HLEN: usize = 8;

/// The `N` bytes at `offset`, if they lie inside the packet.
#[inline(always)]
pub fn read<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let start = ctx.data();
    if start + offset + N > ctx.data_end() {
        return None;
    }
    // SAFETY: the N bytes at `offset` are inside the packet (checked above).
    Some(unsafe { ((start + offset) as *const [u8; N]).read_unaligned() })
}

/// The IPv4 header of a frame, checked.
pub struct Ipv4 {
    /// The Ethernet header's address fields, writable.
    macs: *mut [u8; 12],
    /// Offset of the IPv4 header in the frame.
    pub l3: usize,
    /// Source address, network byte order.
    pub src_addr: u32,
    /// Destination address, network byte order.
    pub dst_addr: u32,
    /// IP protocol number.
    pub proto: u8,
    /// Identification, network byte order.
    pub id: u16,
    /// Where the packet stands in its datagram.
    pub fragment: Fragment,
    /// Total length: the byte count IPVS reports; within the frame.
    pub ip_len: u16,
}

impl Ipv4 {
    /// Parses the Ethernet and IPv4 headers, or `None` when the frame is not IPv4 version 4
    /// without options, with a correct header checksum and a total length within the frame.
    #[inline(always)]
    pub fn parse(ctx: &XdpContext) -> Option<Self> {
        let [.., t0, t1] = read::<ETH_HLEN>(ctx, 0)?;
        let mut l3 = ETH_HLEN;
        let mut ether_type = u16::from_be_bytes([t0, t1]);
        if ether_type == ETH_P_8021Q {
            let [.., t0, t1] = read::<VLAN_HLEN>(ctx, ETH_HLEN)?;
            ether_type = u16::from_be_bytes([t0, t1]);
            l3 += VLAN_HLEN;
        }
        if ether_type != ETH_P_IP {
            return None;
        }
        let hdr = read::<IPV4_HLEN>(ctx, l3)?;
        if hdr[0] != 0x45 || !ipv4::checksum_ok(&hdr) {
            return None;
        }
        let ip_len = u16::from_be_bytes([hdr[2], hdr[3]]);
        let frame_len = ctx.data_end() - ctx.data();
        if (ip_len as usize) < IPV4_HLEN || l3 + ip_len as usize > frame_len {
            return None;
        }
        Some(Self {
            macs: ctx.data() as *mut [u8; 12],
            l3,
            src_addr: u32::from_ne_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]),
            dst_addr: u32::from_ne_bytes([hdr[16], hdr[17], hdr[18], hdr[19]]),
            proto: hdr[9],
            id: u16::from_ne_bytes([hdr[4], hdr[5]]),
            fragment: Fragment::of(u16::from_be_bytes([hdr[6], hdr[7]])),
            ip_len,
        })
    }

    /// Offset of the payload (the transport header) in the frame.
    #[inline(always)]
    pub fn l4(&self) -> usize {
        self.l3 + IPV4_HLEN
    }

    /// The datagram this packet is (a fragment of).
    #[inline(always)]
    pub fn datagram(&self) -> FragKey {
        FragKey {
            src_addr: self.src_addr,
            dst_addr: self.dst_addr,
            id: self.id,
            proto: self.proto,
            _pad: 0,
        }
    }

    /// Addresses the frame from `src` to `dst`, leaving everything after the MACs untouched.
    #[inline(always)]
    pub fn set_macs(&self, dst: &[u8; 6], src: &[u8; 6]) {
        let mut m = [0u8; 12];
        m[..6].copy_from_slice(dst);
        m[6..].copy_from_slice(src);
        // SAFETY: `macs` points at the 12 address bytes of the Ethernet header, inside the
        // packet (`parse` read the whole header).
        unsafe { self.macs.write_unaligned(m) };
    }
}

/// A TCP or UDP packet (or a datagram's first fragment) with its flow.
pub struct Packet {
    /// The flow, in network byte order.
    pub key: FlowKey,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
}

impl Packet {
    /// The transport header after `ip`, or `None` when it is not a whole TCP or UDP header
    /// inside the IP packet.
    #[inline(always)]
    pub fn parse(ctx: &XdpContext, ip: &Ipv4) -> Option<Self> {
        let l4 = ip.l4();
        let (ports, tcp_flags) = match ip.proto {
            ip_proto::TCP => {
                if (ip.ip_len as usize) < IPV4_HLEN + TCP_HLEN {
                    return None;
                }
                let t = read::<TCP_HLEN>(ctx, l4)?;
                ([t[0], t[1], t[2], t[3]], t[13])
            }
            ip_proto::UDP => {
                if (ip.ip_len as usize) < IPV4_HLEN + UDP_HLEN {
                    return None;
                }
                let [p0, p1, p2, p3, ..] = read::<UDP_HLEN>(ctx, l4)?;
                ([p0, p1, p2, p3], 0)
            }
            _ => return None,
        };
        Some(Self {
            key: FlowKey {
                src_addr: ip.src_addr,
                dst_addr: ip.dst_addr,
                src_port: u16::from_ne_bytes([ports[0], ports[1]]),
                dst_port: u16::from_ne_bytes([ports[2], ports[3]]),
                proto: ip.proto as u32,
            },
            tcp_flags,
        })
    }
}
