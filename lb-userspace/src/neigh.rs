//! Real servers' MAC addresses, from the kernel's neighbour tables (ARP and NDP). The daemon
//! never asks the user for a MAC: it dumps the tables over rtnetlink and, for an unknown
//! address, sends one datagram to it so that the kernel resolves it.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket},
};

use anyhow::{Context, Result};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::iface;

/// The discard port, used for resolution probes.
const PROBE_PORT: u16 = 9;
/// The largest datagram the kernel sends in a dump.
const DUMP_DATAGRAM: usize = 32 * 1024;

/// One complete neighbour entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Hardware address.
    pub mac: [u8; 6],
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

/// The complete IPv4 and IPv6 neighbour entries on `device` in the caller's network
/// namespace; empty (and logged) when they cannot be read.
pub fn table(device: &str) -> HashMap<IpAddr, Neighbour> {
    iface::index(device)
        .and_then(|ifindex| Ok(complete(dump()?, ifindex)))
        .unwrap_or_else(|e| {
            log::warn!("cannot read the neighbour table of {device}: {e:#}");
            HashMap::new()
        })
}

/// The entries of `messages` on interface `ifindex` that hold a link-layer address: those in
/// a valid state (reachable, stale, delay, probe, permanent, noarp), not incomplete or failed.
pub fn complete(
    messages: impl IntoIterator<Item = NeighbourMessage>,
    ifindex: u32,
) -> HashMap<IpAddr, Neighbour> {
    messages
        .into_iter()
        .filter(|m| m.header.ifindex == ifindex && is_valid(m.header.state))
        .filter_map(|m| {
            let (mut addr, mut mac) = (None, None);
            for attribute in m.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        addr = Some(IpAddr::V4(a));
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        addr = Some(IpAddr::V6(a));
                    }
                    NeighbourAttribute::LinkLayerAddress(ll) => {
                        mac = <[u8; 6]>::try_from(ll).ok().filter(|m| *m != [0; 6]);
                    }
                    _ => {}
                }
            }
            Some((addr?, Neighbour { mac: mac? }))
        })
        .collect()
}

/// NUD_VALID of the kernel: an entry in one of these states has a usable link-layer address.
fn is_valid(state: NeighbourState) -> bool {
    const NUD_VALID: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;
    u16::from(state) & NUD_VALID != 0
}

/// Every neighbour entry of every family, from one RTM_GETNEIGH dump.
fn dump() -> Result<Vec<NeighbourMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetNeighbour(
            NeighbourMessage::default(),
        )),
    );
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0).context("sending RTM_GETNEIGH")?;

    let mut entries = Vec::new();
    buf.resize(DUMP_DATAGRAM, 0);
    loop {
        let len = socket.recv(&mut &mut buf[..], libc::MSG_TRUNC)?;
        if len > buf.len() {
            anyhow::bail!("a {len}-byte netlink datagram exceeds the dump's limit");
        }
        let mut rest = &buf[..len];
        while !rest.is_empty() {
            // At least a header long and within the datagram (checked), padded to 4 bytes.
            let frame = NetlinkBuffer::new_checked(rest).context("a malformed netlink message")?;
            let next = (frame.length() as usize).next_multiple_of(4);
            // One entry the crate cannot decode must not hide the others.
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest).map(|m| m.payload) {
                Ok(NetlinkPayload::Done(_)) => return Ok(entries),
                Ok(NetlinkPayload::Error(e)) => return Err(io::Error::from(e).into()),
                Ok(NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m))) => {
                    entries.push(m);
                }
                Ok(_) => {}
                Err(e) => log::debug!("skipping a neighbour entry: {e}"),
            }
            rest = rest.get(next..).unwrap_or_default();
        }
    }
}

/// Makes the kernel resolve `addrs` (ARP or neighbour discovery): one empty datagram to each
/// one's discard port, from one socket per family.
pub fn probe(addrs: &[IpAddr]) {
    for unspecified in [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ] {
        let mut family = addrs
            .iter()
            .filter(|a| a.is_ipv4() == unspecified.is_ipv4())
            .peekable();
        if family.peek().is_none() {
            continue;
        }
        if let Ok(sock) = UdpSocket::bind((unspecified, 0)) {
            for addr in family {
                let _ = sock.send_to(&[], (*addr, PROBE_PORT));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ifindex: u32, state: NeighbourState, addr: &str, mac: &[u8]) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.ifindex = ifindex;
        m.header.state = state;
        let addr: IpAddr = addr.parse().unwrap();
        m.attributes = vec![
            NeighbourAttribute::Destination(addr.into()),
            NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
        ];
        m
    }

    #[test]
    fn keeps_complete_entries_of_both_families_on_the_device() {
        let table = complete(
            [
                entry(
                    2,
                    NeighbourState::Reachable,
                    "10.0.0.2",
                    &[2, 0, 0, 0, 0, 2],
                ),
                entry(2, NeighbourState::Stale, "fd00::5", &[2, 0, 0, 0, 0, 5]),
                entry(
                    2,
                    NeighbourState::Permanent,
                    "10.0.0.6",
                    &[2, 0, 0, 0, 0, 6],
                ),
                // Another interface.
                entry(
                    3,
                    NeighbourState::Reachable,
                    "10.0.0.4",
                    &[2, 0, 0, 0, 0, 4],
                ),
                // Not resolved.
                entry(2, NeighbourState::Incomplete, "10.0.0.3", &[]),
                entry(2, NeighbourState::Failed, "fd00::3", &[2, 0, 0, 0, 0, 3]),
                // No usable link-layer address.
                entry(2, NeighbourState::Noarp, "fd00::7", &[]),
                entry(2, NeighbourState::Reachable, "10.0.0.8", &[0; 6]),
            ],
            2,
        );
        let expected = HashMap::from([
            ("10.0.0.2".parse().unwrap(), [2, 0, 0, 0, 0, 2]),
            ("fd00::5".parse().unwrap(), [2, 0, 0, 0, 0, 5]),
            ("10.0.0.6".parse().unwrap(), [2, 0, 0, 0, 0, 6]),
        ]);
        assert_eq!(
            table,
            expected
                .into_iter()
                .map(|(a, mac)| (a, Neighbour { mac }))
                .collect()
        );
    }

    #[test]
    fn an_entry_without_a_destination_is_skipped() {
        let mut m = entry(
            2,
            NeighbourState::Reachable,
            "10.0.0.2",
            &[2, 0, 0, 0, 0, 2],
        );
        m.attributes.remove(0);
        assert!(complete([m], 2).is_empty());
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
