//! IPv4 and ICMP header facts the data path decides on, as pure functions of header bytes.

/// IP protocol number of ICMP.
pub const ICMP: u8 = 1;

/// ICMP type "destination unreachable" (code 4: fragmentation needed, the PMTU message).
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMP type "time exceeded".
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// Where a packet stands in its datagram, from the flags-and-offset field (host order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    Whole,
    /// Offset 0 with more fragments to come: carries the transport header.
    First,
    /// Offset above 0: no transport header.
    Later,
}

impl Fragment {
    /// Decodes the flags-and-offset field (more-fragments flag 0x2000, offset 0x1fff).
    pub const fn of(flags_offset: u16) -> Self {
        if flags_offset & 0x1fff != 0 {
            Self::Later
        } else if flags_offset & 0x2000 != 0 {
            Self::First
        } else {
            Self::Whole
        }
    }
}

/// Whether a 20-byte IPv4 header (no options) carries a correct header checksum: its 16-bit
/// words, checksum included, add up to 0xffff in ones' complement.
pub const fn checksum_ok(hdr: &[u8; 20]) -> bool {
    let mut sum = 0u32;
    let mut i = 0;
    while i < 20 {
        sum += u16::from_be_bytes([hdr[i], hdr[i + 1]]) as u32;
        i += 2;
    }
    // Ten words add up to less than 2^20: two folds leave 16 bits.
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum == 0xffff
}

/// Whether an ICMP message of `icmp_type` is an error about a flow that IPVS relates to its
/// connection (destination unreachable, any code, and time exceeded). IPVS also relates the
/// obsolete source quench (RFC 6633 deprecates it); xdpvs passes it to the kernel.
pub const fn is_flow_error(icmp_type: u8) -> bool {
    matches!(icmp_type, ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with a correct checksum (the usual worked example, 172.16.10.99 -> 172.16.10.12).
    const CAPTURED: [u8; 20] = [
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0xb1, 0xe6, 0xac, 0x10, 0x0a,
        0x63, 0xac, 0x10, 0x0a, 0x0c,
    ];

    #[test]
    fn a_correct_header_checksum_is_accepted_and_any_flipped_bit_refused() {
        assert!(checksum_ok(&CAPTURED));
        for bit in 0..160 {
            let mut h = CAPTURED;
            h[bit / 8] ^= 0x80 >> (bit % 8);
            assert!(!checksum_ok(&h), "bit {bit}");
        }
    }

    #[test]
    fn fragment_position_comes_from_the_flag_and_the_offset() {
        assert_eq!(Fragment::of(0x0000), Fragment::Whole);
        assert_eq!(Fragment::of(0x4000), Fragment::Whole, "don't fragment");
        assert_eq!(Fragment::of(0x2000), Fragment::First);
        assert_eq!(Fragment::of(0x2001), Fragment::Later);
        assert_eq!(Fragment::of(0x00b9), Fragment::Later, "the last fragment");
        assert_eq!(Fragment::of(0x8000), Fragment::Whole, "the reserved bit");
    }

    #[test]
    fn unreachable_and_time_exceeded_are_flow_errors_echo_is_not() {
        assert!(is_flow_error(ICMP_DEST_UNREACH));
        assert!(is_flow_error(ICMP_TIME_EXCEEDED));
        for other in [0, 4, 5, 8, 12] {
            assert!(!is_flow_error(other), "type {other}");
        }
    }
}
