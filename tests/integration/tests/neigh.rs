//! The neighbour table read over rtnetlink, in two namespaces joined by a veth pair: probes
//! make the kernel resolve a peer's IPv4 address (ARP) and IPv6 address (neighbour
//! discovery), and the table then holds both at the peer's MAC.

use std::{net::IpAddr, time::Duration};

use lb_userspace::neigh::{self, Neighbour};
use xdpvs_testbed::{
    cluster::wait_until,
    netns::{Netns, unique_name},
};

const IFACE: &str = "eth0";
const PEER_MAC: &str = "02:00:00:00:78:02";

/// A namespace's `IFACE` up at `mac` with `addrs` (IPv6 ones without duplicate address
/// detection, so that they are usable at once).
fn configure(ns: &Netns, mac: &str, addrs: &[&str]) {
    ns.ip(&["link", "set", IFACE, "address", mac, "up"])
        .unwrap();
    for addr in addrs {
        let mut args = vec!["addr", "add", addr, "dev", IFACE];
        if addr.contains(':') {
            args.push("nodad");
        }
        ns.ip(&args).unwrap();
    }
}

#[test]
fn probes_resolve_a_peers_ipv4_and_ipv6_addresses_into_the_table() {
    let here = Netns::create(unique_name("nb-here")).unwrap();
    let peer = Netns::create(unique_name("nb-peer")).unwrap();
    here.add_veth(IFACE, IFACE, &peer).unwrap();
    configure(
        &here,
        "02:00:00:00:78:01",
        &["10.78.0.1/24", "fd00:78::1/64"],
    );
    configure(&peer, PEER_MAC, &["10.78.0.2/24", "fd00:78::2/64"]);
    let addrs: [IpAddr; 2] = ["10.78.0.2".parse().unwrap(), "fd00:78::2".parse().unwrap()];
    let mac = neigh::parse_mac(PEER_MAC).unwrap();

    let table = |device: &'static str| here.enter(move || neigh::table(device)).unwrap();
    assert!(
        addrs.iter().all(|a| !table(IFACE).contains_key(a)),
        "resolved before any probe"
    );
    here.enter(move || neigh::probe(&addrs)).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || addrs.iter().all(|a| table(
            IFACE
        )
        .get(a)
            == Some(&Neighbour { mac }))),
        "table after the probes: {:?}",
        table(IFACE)
    );
    // The entries belong to the veth, not to another device.
    assert!(addrs.iter().all(|a| !table("lo").contains_key(a)));
}
