//! The benchmark's live-frame traffic generator: what it sends and how it counts. The
//! generator program rewrites one template frame per run (BPF_PROG_TEST_RUN with live frames)
//! into the `n`-th of `flows` distinct client flows; the sink program counts what the director
//! sent back.

/// Distinct source ports per source address.
pub const PORTS_PER_ADDR: u32 = 50_000;
/// The first source port.
pub const FIRST_PORT: u32 = 1024;
/// The first source address, 10.128.0.0 (host order).
pub const FIRST_ADDR: u32 = 0x0a80_0000;

/// The generator's settings (one-entry array map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Generator {
    /// Destination MAC of generated frames: the director's.
    pub dst_mac: [u8; 6],
    /// Source MAC of generated frames: the client's.
    pub src_mac: [u8; 6],
    /// Distinct flows to cycle through (0 is taken as 1).
    pub flows: u32,
}

/// Slots of the generator's counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Frames the generator built.
    Sent = 0,
    /// Frames the sink received from the director (source MAC = the director's).
    Received = 1,
}

impl Counter {
    /// Number of slots.
    pub const COUNT: u32 = 2;
}

/// Source address and port (host order) of flow `i`: 50,000 ports per address.
#[inline(always)]
pub fn flow_source(i: u32) -> (u32, u16) {
    (
        FIRST_ADDR + i / PORTS_PER_ADDR,
        (FIRST_PORT + i % PORTS_PER_ADDR) as u16,
    )
}

/// The IPv4 header checksum of `header` (20 bytes, checksum field included as it is).
#[inline(always)]
pub fn ipv4_checksum(header: &[u8; 20], skip_checksum_field: bool) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < 20 {
        if !(skip_checksum_field && i == 10) {
            sum += u16::from_be_bytes([header[i], header[i + 1]]) as u32;
        }
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_distinct_and_wrap_ports_into_the_next_address() {
        assert_eq!(flow_source(0), (FIRST_ADDR, 1024));
        assert_eq!(flow_source(49_999), (FIRST_ADDR, 1024 + 49_999));
        assert_eq!(flow_source(50_000), (FIRST_ADDR + 1, 1024));
        let all: std::collections::HashSet<_> = (0..200_000).map(flow_source).collect();
        assert_eq!(all.len(), 200_000);
    }

    #[test]
    fn checksum_matches_a_known_header() {
        // A header from RFC 1071-style worked examples: checksum 0xb861.
        let h: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&h, true), 0xb861);
        // Summed with its own checksum, a valid header gives zero.
        assert_eq!(ipv4_checksum(&h, false), 0);
    }
}
