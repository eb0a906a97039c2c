//! A checked view of the headers the balancer reads: Ethernet (with at most one 802.1Q tag),
//! then IPv4 without options and with a correct header checksum, or IPv6 with at most
//! [`MAX_EXT_HEADERS`] extension headers before the transport, then the transport ports. Every
//! read is bounds checked against `data_end` so that the verifier accepts it; anything else
//! yields `None`. The frame is never copied; what the parse found is kept in a per-CPU slot.

use crate::maps::PACKET_SCRATCH;
use aya_ebpf::programs::XdpContext;
use lb_common::{
    addr::Addr,
    flow::FlowKey,
    frag::FragKey,
    ip_proto,
    ipv4::{self, Fragment},
    ipv6,
};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
/// Length of an IPv4 header without options.
pub const IPV4_HLEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_HLEN: usize = 40;
/// Most IPv6 extension headers walked before the transport header; a longer chain passes.
pub const MAX_EXT_HEADERS: usize = 4;
/// Largest offset in a frame the parser accepts: XDP's linear data lies within one page, far
/// below it. Offsets kept as u16 are masked with it where read back, so that the verifier,
/// which knows nothing of a stored 2-byte value's bounds, sees a packet offset it accepts.
const MAX_OFFSET: usize = 0x3fff;
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

/// This CPU's scratch packet, set to `ip`.
#[inline(always)]
fn scratch(ip: Ip) -> Option<&'static mut Ip> {
    let slot = PACKET_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's own slot of a per-CPU array, never freed; the program does not run
    // twice at once on one CPU, and a run parses one packet.
    let slot = unsafe { &mut *slot };
    *slot = ip;
    Some(slot)
}

/// The IPv6 address at `offset`, if it lies inside the packet.
#[inline(always)]
pub fn read_addr(ctx: &XdpContext, offset: usize) -> Option<Addr> {
    let start = ctx.data();
    if start + offset + 16 > ctx.data_end() {
        return None;
    }
    // SAFETY: the 16 bytes at `offset` are inside the packet (checked above); an address's
    // words are kept in network byte order, as they lie.
    Some(Addr(unsafe {
        ((start + offset) as *const [u32; 4]).read_unaligned()
    }))
}

/// The IP header of a frame, of either family, checked. It lives in this CPU's
/// [`PACKET_SCRATCH`] slot, off the program's stack, which the deepest scheduler call chain
/// adds to.
pub struct Ip {
    /// Offset of the transport header (or the fragment's payload) in the frame, read back
    /// through [`Ip::l4`].
    l4: u16,
    /// Offset of the end of the IP packet in the frame (at most the frame's end), read back
    /// through [`Ip::end`].
    end: u16,
    /// The packet's flow: its addresses and protocol, and its ports once [`Ip::ports`] read
    /// them.
    pub key: FlowKey,
    /// The transport protocol number (IPv6: the last header's next header).
    pub proto: u8,
    /// Identification, network byte order (IPv4's 16 bits widened; IPv6's fragment header's).
    pub id: u32,
    /// Where the packet stands in its datagram.
    pub fragment: Fragment,
    /// The IP packet's length, headers included: the byte count IPVS reports.
    pub ip_len: u16,
}

/// A frame as the program of one family sees it.
pub enum Parsed {
    /// A checked IP packet of the program's family.
    Ip(&'static mut Ip),
    /// An IPv6 frame reaching the IPv4 program: the IPv6 program's to parse.
    Ipv6,
    /// Anything else.
    Other,
}

impl Ip {
    /// Parses the Ethernet header, then the IP header of the family of the program (IPv6
    /// when `V6`): a checked IPv4 packet ([`Ip::ipv4`]) or a checked IPv6 one ([`Ip::ipv6`]).
    #[inline(always)]
    pub fn parse<const V6: bool>(ctx: &XdpContext) -> Parsed {
        match Self::parse_as::<V6>(ctx) {
            Some(Some(ip)) => Parsed::Ip(ip),
            Some(None) => Parsed::Ipv6,
            None => Parsed::Other,
        }
    }

    /// The packet; `Some(None)` for an IPv6 frame in the IPv4 program.
    #[inline(always)]
    fn parse_as<const V6: bool>(ctx: &XdpContext) -> Option<Option<&'static mut Self>> {
        let [.., t0, t1] = read::<ETH_HLEN>(ctx, 0)?;
        let mut l3 = ETH_HLEN;
        let mut ether_type = u16::from_be_bytes([t0, t1]);
        if ether_type == ETH_P_8021Q {
            let [.., t0, t1] = read::<VLAN_HLEN>(ctx, ETH_HLEN)?;
            ether_type = u16::from_be_bytes([t0, t1]);
            l3 += VLAN_HLEN;
        }
        match (ether_type, V6) {
            (ETH_P_IP, false) => Self::ipv4(ctx, l3).map(Some),
            (ETH_P_IPV6, false) => Some(None),
            (ETH_P_IPV6, true) => Self::ipv6(ctx, l3).map(Some),
            _ => None,
        }
    }

    /// IPv4 version 4 without options, with a correct header checksum and a total length
    /// within the frame.
    #[inline(always)]
    fn ipv4(ctx: &XdpContext, l3: usize) -> Option<&'static mut Self> {
        let hdr = read::<IPV4_HLEN>(ctx, l3)?;
        if hdr[0] != 0x45 || !ipv4::checksum_ok(&hdr) {
            return None;
        }
        let ip_len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
        let frame_len = ctx.data_end() - ctx.data();
        if ip_len < IPV4_HLEN || l3 + ip_len > frame_len || l3 + ip_len > MAX_OFFSET {
            return None;
        }
        scratch(Self {
            l4: (l3 + IPV4_HLEN) as u16,
            end: (l3 + ip_len) as u16,
            key: FlowKey {
                src_addr: Addr::v4(u32::from_ne_bytes([hdr[12], hdr[13], hdr[14], hdr[15]])),
                dst_addr: Addr::v4(u32::from_ne_bytes([hdr[16], hdr[17], hdr[18], hdr[19]])),
                src_port: 0,
                dst_port: 0,
                proto: hdr[9] as u32,
            },
            proto: hdr[9],
            id: u16::from_ne_bytes([hdr[4], hdr[5]]) as u32,
            fragment: Fragment::of(u16::from_be_bytes([hdr[6], hdr[7]])),
            ip_len: ip_len as u16,
        })
    }

    /// IPv6 with a payload length within the frame (no jumbograms), neither address
    /// IPv4-mapped, and a chain of at most [`MAX_EXT_HEADERS`] extension headers that IPVS
    /// looks through ([`ipv6::ext_header`]) before the transport header. The header is read
    /// in parts, so that no copy of all of it takes the program's stack.
    #[inline(always)]
    fn ipv6(ctx: &XdpContext, l3: usize) -> Option<&'static mut Self> {
        let [version, _, _, _, p0, p1, next, _] = read::<8>(ctx, l3)?;
        if version >> 4 != 6 {
            return None;
        }
        let payload_len = u16::from_be_bytes([p0, p1]) as usize;
        let frame_len = ctx.data_end() - ctx.data();
        let end = l3 + IPV6_HLEN + payload_len;
        if payload_len == 0 || end > frame_len || end > MAX_OFFSET {
            return None;
        }
        let ip = scratch(Self {
            l4: (l3 + IPV6_HLEN) as u16,
            end: end as u16,
            key: FlowKey::default(),
            proto: next,
            id: 0,
            fragment: Fragment::Whole,
            ip_len: (IPV6_HLEN + payload_len) as u16,
        })?;
        ip.key.src_addr = read_addr(ctx, l3 + 8)?;
        ip.key.dst_addr = read_addr(ctx, l3 + 24)?;
        if ip.key.src_addr.as_v4().is_some() || ip.key.dst_addr.as_v4().is_some() {
            return None;
        }
        for _ in 0..MAX_EXT_HEADERS {
            if !ipv6::is_ext_header(ip.proto) || ip.fragment == Fragment::Later {
                // A later fragment's rest is payload: its first bytes are no header.
                break;
            }
            ip.skip_ext_header(ctx)?;
        }
        if ipv6::is_ext_header(ip.proto) && ip.fragment != Fragment::Later {
            return None;
        }
        ip.key.proto = ip.proto as u32;
        Some(ip)
    }

    /// Steps over the extension header at `l4`, or `None` when IPVS would not look through
    /// it ([`ipv6::ext_header`]) or it does not fit in the packet.
    #[inline(always)]
    fn skip_ext_header(&mut self, ctx: &XdpContext) -> Option<()> {
        let h = read::<{ ipv6::EXT_HLEN }>(ctx, self.l4())?;
        let ext = ipv6::ext_header(self.proto, &h)?;
        if let Some((id, fragment)) = ext.fragment {
            self.id = id;
            self.fragment = fragment;
        }
        self.proto = ext.next;
        let l4 = self.l4() + ext.len;
        if l4 > self.end() {
            return None;
        }
        self.l4 = l4 as u16;
        Some(())
    }

    /// Offset of the transport header (or the fragment's payload) in the frame.
    #[inline(always)]
    pub fn l4(&self) -> usize {
        self.l4 as usize & MAX_OFFSET
    }

    /// Offset of the end of the IP packet in the frame.
    #[inline(always)]
    pub fn end(&self) -> usize {
        self.end as usize & MAX_OFFSET
    }

    /// The datagram this packet is (a fragment of).
    #[inline(always)]
    pub fn datagram(&self) -> FragKey {
        FragKey {
            src_addr: self.key.src_addr,
            dst_addr: self.key.dst_addr,
            id: self.id,
            proto: self.proto,
            _pad: [0; 3],
        }
    }
}

/// Addresses the frame from `src` to `dst`, leaving everything after the MACs untouched.
#[inline(always)]
pub fn set_macs(ctx: &XdpContext, dst: &[u8; 6], src: &[u8; 6]) {
    if ctx.data() + 12 > ctx.data_end() {
        return;
    }
    let mut m = [0u8; 12];
    m[..6].copy_from_slice(dst);
    m[6..].copy_from_slice(src);
    // SAFETY: the 12 address bytes of the Ethernet header are inside the packet (checked
    // above).
    unsafe { (ctx.data() as *mut [u8; 12]).write_unaligned(m) };
}

impl Ip {
    /// Reads the transport header's ports into [`Ip::key`]: the TCP flags (0 for UDP), or
    /// `None` when it is not a whole TCP or UDP header inside the IP packet.
    #[inline(always)]
    pub fn ports(&mut self, ctx: &XdpContext) -> Option<u8> {
        let l4 = self.l4();
        let (ports, tcp_flags) = match self.proto {
            ip_proto::TCP => {
                if l4 + TCP_HLEN > self.end() {
                    return None;
                }
                let t = read::<TCP_HLEN>(ctx, l4)?;
                ([t[0], t[1], t[2], t[3]], t[13])
            }
            ip_proto::UDP => {
                if l4 + UDP_HLEN > self.end() {
                    return None;
                }
                let [p0, p1, p2, p3, ..] = read::<UDP_HLEN>(ctx, l4)?;
                ([p0, p1, p2, p3], 0)
            }
            _ => return None,
        };
        self.key.src_port = u16::from_ne_bytes([ports[0], ports[1]]);
        self.key.dst_port = u16::from_ne_bytes([ports[2], ports[3]]);
        Some(tcp_flags)
    }
}
