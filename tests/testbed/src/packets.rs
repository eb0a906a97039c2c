//! Ethernet/IPv4/TCP/UDP frames with correct checksums, built byte by byte for tests.

use std::net::Ipv4Addr;

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
        let (proto, mut l4) = match self.l4 {
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
        let pseudo = [
            &self.src.octets()[..],
            &self.dst.octets()[..],
            &[0, proto],
            &l4_len.to_be_bytes()[..],
        ]
        .concat();
        let csum_at = if proto == 6 { 16 } else { 6 };
        let c = checksum(&[&pseudo, &l4]);
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());

        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(20 + l4_len).to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum(&[&ip]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());

        let mut f = Vec::with_capacity(18 + ip.len() + l4.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        if let Some(vid) = self.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&l4);
        f
    }
}

/// Offset of the IPv4 header in an untagged frame.
pub const IP_OFFSET: usize = 14;
