//! Addresses of either family in one 16-byte form, as IPVS's `union nf_inet_addr`: an IPv6
//! address as it is, an IPv4 address IPv4-mapped (`::ffff:a.b.c.d`), so that every map key
//! holds both families without a family field and no IPv6 address on the wire can collide
//! with an IPv4 one (a mapped address is never a real IPv6 destination: the data path passes
//! such packets).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The mapped prefix's third word, network byte order.
const MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// An address in its 16 wire bytes, as four words in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr(pub [u32; 4]);

impl Addr {
    /// The IPv4-mapped form of `v4` (network byte order).
    pub const fn v4(v4: u32) -> Self {
        Self([0, 0, MAPPED, v4])
    }

    /// An IPv6 address from its 16 wire bytes.
    pub const fn v6(b: [u8; 16]) -> Self {
        Self([
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
            u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
        ])
    }

    /// The IPv4 address (network byte order) when this is one.
    pub const fn as_v4(&self) -> Option<u32> {
        if self.0[0] == 0 && self.0[1] == 0 && self.0[2] == MAPPED {
            Some(self.0[3])
        } else {
            None
        }
    }

    /// The address folded into 32 bits, host byte order, as IPVS's sh and dh hash it: an
    /// IPv4 address itself, an IPv6 address's four words XORed.
    pub const fn fold(&self) -> u32 {
        match self.as_v4() {
            Some(v4) => u32::from_be(v4),
            None => u32::from_be(self.0[0] ^ self.0[1] ^ self.0[2] ^ self.0[3]),
        }
    }

    /// The address with only the bits of `mask` kept.
    pub const fn masked(&self, mask: &Addr) -> Self {
        Self([
            self.0[0] & mask.0[0],
            self.0[1] & mask.0[1],
            self.0[2] & mask.0[2],
            self.0[3] & mask.0[3],
        ])
    }

    /// The 16 wire bytes.
    pub const fn octets(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            let w = self.0[i].to_ne_bytes();
            out[4 * i] = w[0];
            out[4 * i + 1] = w[1];
            out[4 * i + 2] = w[2];
            out[4 * i + 3] = w[3];
            i += 1;
        }
        out
    }

    /// The persistence mask of a client network: for IPv4 a netmask (network byte order,
    /// ipvsadm's `-M 255.255.255.0`), the mapped prefix kept whole.
    pub const fn v4_netmask(mask: u32) -> Self {
        Self([u32::MAX, u32::MAX, u32::MAX, mask])
    }

    /// The persistence mask of an IPv6 client network of `prefix` bits (ipvsadm's `-M 64`);
    /// a prefix above 128 keeps every bit.
    pub const fn v6_prefix(prefix: u8) -> Self {
        let mut words = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            let bits = prefix as i32 - 32 * i as i32;
            let host = if bits >= 32 {
                u32::MAX
            } else if bits <= 0 {
                0
            } else {
                !(u32::MAX >> bits)
            };
            words[i] = host.to_be();
            i += 1;
        }
        Self(words)
    }
}

impl From<Ipv4Addr> for Addr {
    fn from(a: Ipv4Addr) -> Self {
        Self::v4(u32::from_ne_bytes(a.octets()))
    }
}

impl From<Ipv6Addr> for Addr {
    fn from(a: Ipv6Addr) -> Self {
        Self::v6(a.octets())
    }
}

impl From<IpAddr> for Addr {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(v4) => v4.into(),
            IpAddr::V6(v6) => v6.into(),
        }
    }
}

impl From<Addr> for IpAddr {
    fn from(a: Addr) -> Self {
        match a.as_v4() {
            Some(v4) => IpAddr::V4(Ipv4Addr::from(v4.to_ne_bytes())),
            None => IpAddr::V6(Ipv6Addr::from(a.octets())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_round_trip_and_ipv4_is_mapped() {
        for text in ["10.1.2.3", "0.0.0.0", "2001:db8::1", "::", "fe80::1:2"] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(IpAddr::from(Addr::from(ip)), ip, "{text}");
        }
        let v4 = Addr::from("10.1.2.3".parse::<IpAddr>().unwrap());
        let mapped: Ipv6Addr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(v4.octets(), mapped.octets());
        assert_eq!(v4.as_v4(), Some(u32::from_ne_bytes([10, 1, 2, 3])));
    }

    #[test]
    fn fold_is_the_ipv4_address_or_the_xor_of_the_ipv6_words() {
        assert_eq!(Addr::from(Ipv4Addr::new(10, 0, 0, 7)).fold(), 0x0a00_0007);
        let v6: Ipv6Addr = "2001:db8:0:1:0:0:ff:7".parse().unwrap();
        assert_eq!(
            Addr::from(v6).fold(),
            0x2001_0db8 ^ 0x0000_0001 ^ 0x00ff_0007
        );
    }

    #[test]
    fn masks_keep_the_client_network() {
        let c = Addr::from(Ipv4Addr::new(10, 0, 0, 7));
        let m = Addr::v4_netmask(u32::from_ne_bytes([255, 255, 255, 0]));
        assert_eq!(c.masked(&m), Addr::from(Ipv4Addr::new(10, 0, 0, 0)));
        let c6 = Addr::from("2001:db8:1:2:3:4:5:6".parse::<Ipv6Addr>().unwrap());
        for (prefix, net) in [
            (64, "2001:db8:1:2::"),
            (48, "2001:db8:1::"),
            (56, "2001:db8:1::"),
            (60, "2001:db8:1:0::"),
            (128, "2001:db8:1:2:3:4:5:6"),
            (0, "::"),
            (200, "2001:db8:1:2:3:4:5:6"),
        ] {
            let want = Addr::from(net.parse::<Ipv6Addr>().unwrap());
            assert_eq!(c6.masked(&Addr::v6_prefix(prefix)), want, "/{prefix}");
        }
        let c6b = Addr::from("2001:db8:1:2ff::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            c6b.masked(&Addr::v6_prefix(60)),
            Addr::from("2001:db8:1:2f0::".parse::<Ipv6Addr>().unwrap())
        );
    }
}
