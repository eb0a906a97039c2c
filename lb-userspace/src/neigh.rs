//! Real servers' MAC addresses, from the kernel's neighbour table. The daemon never asks the
//! user for a MAC: it reads `/proc/net/arp` and, for an unknown address, sends one datagram to
//! it so that the kernel resolves it.

use std::{
    collections::HashMap,
    fs,
    net::{Ipv4Addr, UdpSocket},
};

/// ATF_COM: the entry is complete.
const ATF_COM: u32 = 0x2;
/// The discard port, used for resolution probes.
const PROBE_PORT: u16 = 9;

/// One complete neighbour entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Hardware address.
    pub mac: [u8; 6],
}

/// Complete entries on `device` from the text of `/proc/net/arp`.
pub fn parse_arp(text: &str, device: &str) -> HashMap<Ipv4Addr, Neighbour> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [ip, _hw_type, flags, mac, _mask, dev] = f[..] else {
                return None;
            };
            let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
            if dev != device || flags & ATF_COM == 0 {
                return None;
            }
            Some((
                ip.parse().ok()?,
                Neighbour {
                    mac: parse_mac(mac)?,
                },
            ))
        })
        .collect()
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    (parts.next().is_none() && out != [0; 6]).then_some(out)
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// The complete neighbour entries on `device` in the caller's network namespace.
pub fn table(device: &str) -> HashMap<Ipv4Addr, Neighbour> {
    fs::read_to_string("/proc/net/arp")
        .map(|t| parse_arp(&t, device))
        .unwrap_or_default()
}

/// Makes the kernel resolve `addrs`: one empty datagram to each one's discard port, all from
/// one socket.
pub fn probe(addrs: &[Ipv4Addr]) {
    if addrs.is_empty() {
        return;
    }
    if let Ok(sock) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        for addr in addrs {
            let _ = sock.send_to(&[], (*addr, PROBE_PORT));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP: &str =
        "IP address       HW type     Flags       HW address            Mask     Device
10.0.0.2         0x1         0x2         02:00:00:00:00:02     *        eth0
10.0.0.3         0x1         0x0         00:00:00:00:00:00     *        eth0
10.0.0.4         0x1         0x2         02:00:00:00:00:04     *        eth1
10.0.0.5         0x1         0x6         02:00:00:00:00:05     *        eth0
";

    #[test]
    fn keeps_complete_entries_of_the_device() {
        let t = parse_arp(ARP, "eth0");
        assert_eq!(t.len(), 2);
        assert_eq!(t[&"10.0.0.2".parse().unwrap()].mac, [2, 0, 0, 0, 0, 2]);
        assert_eq!(t[&"10.0.0.5".parse().unwrap()].mac, [2, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn mac_round_trip() {
        let m = parse_mac("0a:1b:2c:3d:4e:5f").unwrap();
        assert_eq!(format_mac(&m), "0a:1b:2c:3d:4e:5f");
        assert_eq!(parse_mac("00:00:00:00:00:00"), None);
        assert_eq!(parse_mac("0a:1b:2c"), None);
        assert_eq!(parse_mac("0a:1b:2c:3d:4e:5f:00"), None);
    }
}
