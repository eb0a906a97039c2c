//! IPv6 and ICMPv6 header facts the data path decides on, as pure functions of header bytes.

use crate::ipv4::Fragment;

/// Next header: hop-by-hop options.
pub const HOP_BY_HOP: u8 = 0;
/// Next header: routing.
pub const ROUTING: u8 = 43;
/// Next header: fragment.
pub const FRAGMENT: u8 = 44;
/// Next header: authentication header.
pub const AUTH: u8 = 51;
/// Next header: destination options.
pub const DEST_OPTS: u8 = 60;
/// Next header (IP protocol number) of ICMPv6.
pub const ICMPV6: u8 = 58;
/// ICMPv6 type "destination unreachable".
pub const ICMPV6_DEST_UNREACH: u8 = 1;
/// ICMPv6 type "packet too big", the PMTU message.
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// ICMPv6 type "time exceeded".
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
/// Bytes of an extension header read to step over it: every one is at least 8 long.
pub const EXT_HLEN: usize = 8;

/// Whether next header `next` is an extension header IPVS looks through to find the transport
/// header (the kernel's `ipv6_find_hdr` for any target): hop-by-hop, routing, fragment,
/// authentication, destination options. ESP and "no next header" end the chain as a
/// transport that is not balanced.
pub const fn is_ext_header(next: u8) -> bool {
    matches!(next, HOP_BY_HOP | ROUTING | FRAGMENT | AUTH | DEST_OPTS)
}

/// An extension header, stepped over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtHeader {
    /// The header after it.
    pub next: u8,
    /// Its length in bytes.
    pub len: usize,
    /// A fragment header's identification (network byte order) and the packet's place in
    /// its datagram.
    pub fragment: Option<(u32, Fragment)>,
}

/// Extension header `kind` from its first [`EXT_HLEN`] bytes, or `None` when `kind` is not
/// one [`is_ext_header`] looks through.
pub const fn ext_header(kind: u8, h: &[u8; EXT_HLEN]) -> Option<ExtHeader> {
    let (len, fragment) = match kind {
        HOP_BY_HOP | ROUTING | DEST_OPTS => ((h[1] as usize + 1) * 8, None),
        // RFC 4302: the length counts 4-byte words, minus 2.
        AUTH => ((h[1] as usize + 2) * 4, None),
        FRAGMENT => {
            let offset_flags = u16::from_be_bytes([h[2], h[3]]);
            let id = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
            (EXT_HLEN, Some((id, fragment_of(offset_flags))))
        }
        _ => return None,
    };
    Some(ExtHeader {
        next: h[0],
        len,
        fragment,
    })
}

/// Where a packet stands in its datagram from its fragment header's offset-and-flags field
/// (host order: offset in the top 13 bits, more-fragments in bit 0). An atomic fragment
/// (offset 0, no more) is a whole datagram.
pub const fn fragment_of(offset_flags: u16) -> Fragment {
    if offset_flags & 0xfff8 != 0 {
        Fragment::Later
    } else if offset_flags & 1 != 0 {
        Fragment::First
    } else {
        Fragment::Whole
    }
}

/// Whether an ICMPv6 message of `icmp_type` is an error about a flow that IPVS relates to its
/// connection (destination unreachable, packet too big, time exceeded).
pub const fn is_flow_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        ICMPV6_DEST_UNREACH | ICMPV6_PACKET_TOO_BIG | ICMPV6_TIME_EXCEEDED
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_headers_count_8_byte_units_after_the_first_and_auth_4_byte_words() {
        let h = [6, 0, 1, 4, 0, 0, 0, 0];
        for kind in [HOP_BY_HOP, ROUTING, DEST_OPTS] {
            assert_eq!(
                ext_header(kind, &h),
                Some(ExtHeader {
                    next: 6,
                    len: 8,
                    fragment: None
                })
            );
        }
        assert_eq!(
            ext_header(DEST_OPTS, &[17, 2, 0, 0, 0, 0, 0, 0])
                .unwrap()
                .len,
            24
        );
        assert_eq!(ext_header(AUTH, &[6, 4, 0, 0, 0, 0, 0, 0]).unwrap().len, 24);
        assert_eq!(ext_header(6, &h), None);
        assert_eq!(ext_header(50, &h), None, "ESP ends the chain");
    }

    #[test]
    fn fragment_header_gives_the_id_and_the_place_in_the_datagram() {
        let first = [17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
        let ext = ext_header(FRAGMENT, &first).unwrap();
        assert_eq!((ext.next, ext.len), (17, 8));
        assert_eq!(
            ext.fragment,
            Some((
                u32::from_ne_bytes([0xde, 0xad, 0xbe, 0xef]),
                Fragment::First
            ))
        );
        assert_eq!(fragment_of(0x0000), Fragment::Whole, "atomic fragment");
        assert_eq!(fragment_of(0x0008), Fragment::Later, "offset 8 bytes, last");
        assert_eq!(fragment_of(0x05a9), Fragment::Later);
        assert_eq!(fragment_of(0x0006), Fragment::Whole, "reserved bits");
    }

    #[test]
    fn unreachable_too_big_and_time_exceeded_are_flow_errors_nd_and_echo_are_not() {
        for t in [1, 2, 3] {
            assert!(is_flow_error(t), "type {t}");
        }
        for t in [4, 128, 129, 133, 134, 135, 136, 137] {
            assert!(!is_flow_error(t), "type {t}");
        }
    }
}
