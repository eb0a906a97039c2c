//! Ethernet/IPv4/IPv6/TCP/UDP/ICMP frames and fragments with correct checksums, built byte by
//! byte for tests.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The transport part of a frame.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    /// TCP with the given flag byte.
    Tcp { sport: u16, dport: u16, flags: u8 },
    /// UDP.
    Udp { sport: u16, dport: u16 },
}

/// A frame to build.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// An 802.1Q tag's VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Transport header.
    pub l4: L4,
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for chunk in chunks {
        for pair in chunk.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Frame {
    /// The frame's bytes with `payload` after the transport header.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let (proto, l4) = self.segment(payload);
        let ip = Ipv4 {
            src: self.src,
            dst: self.dst,
            proto,
            id: 0,
            flags_offset: 0x4000, // don't fragment
        }
        .packet(&l4);
        ethernet(self.dst_mac, self.src_mac, self.vlan, &ip)
    }

    /// The frames of the datagram with `payload` split into fragments of at most `size`
    /// bytes of IP payload (rounded down to 8-byte units), in order, under IP id `id`.
    pub fn fragments(&self, payload: &[u8], id: u16, size: usize) -> Vec<Vec<u8>> {
        let (proto, l4) = self.segment(payload);
        pieces(&l4, size)
            .map(|(offset, more, chunk)| {
                let ip = Ipv4 {
                    src: self.src,
                    dst: self.dst,
                    proto,
                    id,
                    flags_offset: if more { 0x2000 } else { 0 } | offset,
                }
                .packet(chunk);
                ethernet(self.dst_mac, self.src_mac, self.vlan, &ip)
            })
            .collect()
    }

    /// The IP protocol and the transport segment (header with checksum, then `payload`).
    fn segment(&self, payload: &[u8]) -> (u8, Vec<u8>) {
        segment(self.l4, &self.src.octets(), &self.dst.octets(), payload)
    }
}

/// The IP protocol and the transport segment `l4` from `src` to `dst` (4 or 16 bytes each),
/// its header's checksum over the pseudo-header (whose 16-bit words add up the same in both
/// families' layouts), then `payload`.
fn segment(l4: L4, src: &[u8], dst: &[u8], payload: &[u8]) -> (u8, Vec<u8>) {
    {
        let (proto, mut l4) = match l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..8].copy_from_slice(&1u32.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = flags;
                h[14..16].copy_from_slice(&64240u16.to_be_bytes());
                (6u8, h)
            }
            L4::Udp { sport, dport } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                (17u8, h)
            }
        };
        l4.extend_from_slice(payload);
        let l4_len = l4.len() as u16;
        let pseudo = [src, dst, &[0, proto], &l4_len.to_be_bytes()[..]].concat();
        let csum_at = if proto == 6 { 16 } else { 6 };
        let c = checksum(&[&pseudo, &l4]);
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        (proto, l4)
    }
}

/// An IPv6 frame to build, untagged.
#[derive(Clone, Debug)]
pub struct Frame6 {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Extension headers before the transport, in order: (kind, the bytes after its first
    /// two, which the builder fills with the next header and the length in 8-byte units).
    pub ext: Vec<(u8, Vec<u8>)>,
    /// Transport header.
    pub l4: L4,
}

impl Frame6 {
    /// The frame's bytes with `payload` after the transport header.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let (proto, l4) = segment(self.l4, &self.src.octets(), &self.dst.octets(), payload);
        self.frame(proto, &l4)
    }

    /// The frame carrying `upper` (protocol `proto`) after the extension headers.
    pub fn frame(&self, proto: u8, upper: &[u8]) -> Vec<u8> {
        let mut chain = Vec::new();
        for (i, (_, body)) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(proto, |(kind, _)| *kind);
            chain.push(next);
            chain.push(((body.len() + 2) / 8).saturating_sub(1) as u8);
            chain.extend_from_slice(body);
        }
        let first = self.ext.first().map_or(proto, |(kind, _)| *kind);
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&((chain.len() + upper.len()) as u16).to_be_bytes());
        ip[6] = first;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&self.src.octets());
        ip[24..40].copy_from_slice(&self.dst.octets());
        ip.extend_from_slice(&chain);
        ip.extend_from_slice(upper);
        ethernet_of(self.dst_mac, self.src_mac, None, 0x86dd, &ip)
    }

    /// The frames of the datagram with `payload`, split after a fragment header into
    /// fragments of at most `size` bytes (rounded down to 8-byte units), under id `id`.
    pub fn fragments(&self, payload: &[u8], id: u32, size: usize) -> Vec<Vec<u8>> {
        let (proto, l4) = segment(self.l4, &self.src.octets(), &self.dst.octets(), payload);
        pieces(&l4, size)
            .map(|(offset, more, chunk)| {
                let offset_flags = offset << 3 | u16::from(more);
                let mut body = vec![0u8; 6];
                body[0..2].copy_from_slice(&offset_flags.to_be_bytes());
                body[2..6].copy_from_slice(&id.to_be_bytes());
                // The fragment header's second byte is reserved (0), as the length rule gives.
                let mut f = self.clone();
                f.ext.push((44, body));
                f.frame(proto, chunk)
            })
            .collect()
    }
}

/// `l4` cut into pieces of at most `size` bytes, rounded down to 8-byte units: each piece's
/// offset in 8-byte units, whether more follow, and its bytes.
fn pieces(l4: &[u8], size: usize) -> impl Iterator<Item = (u16, bool, &[u8])> {
    let unit = size / 8 * 8;
    let n = l4.len().div_ceil(unit);
    l4.chunks(unit)
        .enumerate()
        .map(move |(i, chunk)| ((i * unit / 8) as u16, i + 1 < n, chunk))
}

/// An IPv4 header to build (no options).
#[derive(Clone, Copy, Debug)]
pub struct Ipv4 {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub proto: u8,
    /// Identification.
    pub id: u16,
    /// Flags (don't fragment 0x4000, more fragments 0x2000) and offset in 8-byte units.
    pub flags_offset: u16,
}

impl Ipv4 {
    /// The IP packet with `payload`, header checksum filled in.
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&self.id.to_be_bytes());
        ip[6..8].copy_from_slice(&self.flags_offset.to_be_bytes());
        ip[8] = 64;
        ip[9] = self.proto;
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        set_ipv4_checksum(&mut ip);
        ip.extend_from_slice(payload);
        ip
    }
}

/// Fills in the checksum of the IPv4 header at the start of `ip` (its IHL says how long).
pub fn set_ipv4_checksum(ip: &mut [u8]) {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    ip[10..12].fill(0);
    let c = checksum(&[&ip[..ihl]]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// An Ethernet frame (with an 802.1Q tag when `vlan`) carrying the IPv4 packet `ip`.
pub fn ethernet(dst_mac: [u8; 6], src_mac: [u8; 6], vlan: Option<u16>, ip: &[u8]) -> Vec<u8> {
    ethernet_of(dst_mac, src_mac, vlan, 0x0800, ip)
}

/// An Ethernet frame of `ether_type` carrying `ip`.
fn ethernet_of(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vlan: Option<u16>,
    ether_type: u16,
    ip: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + ip.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    if let Some(vid) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// An ICMP message of `icmp_type`/`code` whose 4 type-specific bytes are `rest` (for
/// "fragmentation needed": the next-hop MTU in the low two) and whose body is `quoted`, with
/// its checksum.
pub fn icmp(icmp_type: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![icmp_type, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(quoted);
    let c = checksum(&[&m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Offset of the IPv4 header in an untagged frame.
pub const IP_OFFSET: usize = 14;
