//! The direct-routing test topology: a client, a director and real servers in their own
//! namespaces, joined by a bridge in a further namespace, all on one subnet: 10.77.0.0/24
//! unless built on other [`Addressing`].
//!
//! Real servers own the VIP on `lo` with arp_ignore=1 and arp_announce=2; the director owns it
//! on its interface, so it alone answers ARP for it. A pair of directors ([`Topology::pair`])
//! has no VIP of its own: VRRP (keepalived) adds it to one of them. Everything is removed on
//! drop.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result};
use aya::{Ebpf, programs::XdpMode};
use lb_common::tools::program_names;

use crate::{
    netns::{Netns, enter_current_thread, unique_name},
    tools,
};

/// The virtual IP.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
/// The client's address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);
/// The director's own address.
pub const DIRECTOR_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The director's MAC.
pub const DIRECTOR_MAC: &str = "02:00:00:00:00:02";
/// The second director's own address, in a pair.
pub const DIRECTOR2_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
/// The second director's MAC, in a pair.
pub const DIRECTOR2_MAC: &str = "02:00:00:00:00:03";
/// The client's MAC.
pub const CLIENT_MAC: &str = "02:00:00:00:00:10";
/// The interface name inside every host namespace.
pub const IFACE: &str = "eth0";

/// The IPv6 VIP. Every host also has an IPv6 address on the link (the director holds the
/// VIP too, the real servers have it on `lo`), without duplicate address detection.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0x100);
/// The client's IPv6 address.
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0x10);
/// The director's IPv6 address.
const DIRECTOR_IP6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);
/// The second director's IPv6 address.
const DIRECTOR2_IP6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 3);

/// IPv6 address of real server `i` (0-based).
pub fn real_server_ip6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0x21 + i as u16)
}

/// Address of real server `i` (0-based).
pub fn real_server_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 21 + i as u8)
}

/// MAC of real server `i` (0-based).
pub fn real_server_mac(i: usize) -> String {
    format!("02:00:00:00:00:{:02x}", 0x21 + i)
}

/// The name real server `i` answers with.
pub fn real_server_name(i: usize) -> String {
    format!("rs{}", i + 1)
}

/// The addresses of a topology, all in one subnet.
#[derive(Clone, Debug)]
pub struct Addressing {
    /// Prefix length of the subnet.
    pub prefix_len: u8,
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// The client.
    pub client: Ipv4Addr,
    /// The director.
    pub director: Ipv4Addr,
    /// The real servers, one namespace each.
    pub real_servers: Vec<Ipv4Addr>,
}

impl Addressing {
    /// The usual 10.77.0.0/24 with `n` real servers ([`VIP`], [`CLIENT_IP`], ...).
    pub fn lab(n: usize) -> Self {
        Self {
            prefix_len: 24,
            vip: VIP,
            client: CLIENT_IP,
            director: DIRECTOR_IP,
            real_servers: (0..n).map(real_server_ip).collect(),
        }
    }
}

/// A built topology.
pub struct Topology {
    /// Keep the pass-through program on the directors' bridge ports (see `attach_peer_pass`).
    _peer_pass: Vec<Ebpf>,
    /// The client.
    pub client: Netns,
    /// The director (where xdpvsd runs).
    pub director: Netns,
    /// The second director of a pair.
    pub director2: Option<Netns>,
    /// The real servers.
    pub real_servers: Vec<Netns>,
    /// The switch. Dropped last.
    pub bridge: Netns,
    /// Its addresses.
    pub addressing: Addressing,
}

impl Topology {
    /// Builds a topology with `n` real servers; `tag` goes into the namespace names.
    pub fn build(tag: &str, n: usize) -> Result<Self> {
        Self::build_on(tag, Addressing::lab(n))
    }

    /// Builds a topology on `addressing`.
    pub fn build_on(tag: &str, addressing: Addressing) -> Result<Self> {
        Self::build_with(tag, addressing, false)
    }

    /// As [`Topology::build`] with two directors (the second at [`DIRECTOR2_IP`]), neither
    /// holding the VIP.
    pub fn pair(tag: &str, n: usize) -> Result<Self> {
        Self::build_with(tag, Addressing::lab(n), true)
    }

    fn build_with(tag: &str, addressing: Addressing, pair: bool) -> Result<Self> {
        let a = &addressing;
        let bridge = Netns::create(unique_name(&format!("{tag}-br")))?;
        bridge.ip(&["link", "add", "br0", "type", "bridge"])?;
        bridge.ip(&["link", "set", "br0", "up"])?;
        let client = host(
            &bridge,
            &unique_name(&format!("{tag}-cl")),
            "pcl",
            CLIENT_MAC,
            a.client,
            a.prefix_len,
        )?;
        // Forwarded TCP segments would otherwise reach the real servers with a partial checksum.
        client.exec("ethtool", &["-K", IFACE, "tx", "off"])?;
        add_ipv6(&client, CLIENT_IP6, 64, IFACE)?;
        let director = host(
            &bridge,
            &unique_name(&format!("{tag}-dir")),
            "pdir",
            DIRECTOR_MAC,
            a.director,
            a.prefix_len,
        )?;
        add_ipv6(&director, DIRECTOR_IP6, 64, IFACE)?;
        let director2 = pair
            .then(|| {
                host(
                    &bridge,
                    &unique_name(&format!("{tag}-dir2")),
                    "pdir2",
                    DIRECTOR2_MAC,
                    DIRECTOR2_IP,
                    a.prefix_len,
                )
                .and_then(|ns| add_ipv6(&ns, DIRECTOR2_IP6, 64, IFACE).map(|()| ns))
            })
            .transpose()?;
        if !pair {
            director.ip(&["addr", "add", &format!("{}/32", a.vip), "dev", IFACE])?;
            add_ipv6(&director, VIP6, 128, IFACE)?;
        }
        let mut real_servers = Vec::with_capacity(a.real_servers.len());
        for (i, ip) in a.real_servers.iter().enumerate() {
            let rs = host(
                &bridge,
                &unique_name(&format!("{tag}-rs{}", i + 1)),
                &format!("prs{i}"),
                &real_server_mac(i),
                *ip,
                a.prefix_len,
            )?;
            for conf in ["all", IFACE] {
                rs.sysctl(&format!("net.ipv4.conf.{conf}.arp_ignore"), "1")?;
                rs.sysctl(&format!("net.ipv4.conf.{conf}.arp_announce"), "2")?;
            }
            rs.ip(&["addr", "add", &format!("{}/32", a.vip), "dev", "lo"])?;
            add_ipv6(&rs, real_server_ip6(i), 64, IFACE)?;
            // Linux answers neighbour solicitations only for the addresses of the interface
            // they arrive on: on `lo` the VIP stays silent on the wire without sysctls.
            add_ipv6(&rs, VIP6, 128, "lo")?;
            real_servers.push(rs);
        }
        let mut peer_pass = vec![attach_peer_pass(&bridge, "pdir")?];
        if pair {
            peer_pass.push(attach_peer_pass(&bridge, "pdir2")?);
        }
        Ok(Self {
            _peer_pass: peer_pass,
            client,
            director,
            director2,
            real_servers,
            bridge,
            addressing,
        })
    }
}

/// Adds `addr/prefix_len` to `dev` in `ns`, without duplicate address detection.
fn add_ipv6(ns: &Netns, addr: Ipv6Addr, prefix_len: u8, dev: &str) -> Result<()> {
    let addr = format!("{addr}/{prefix_len}");
    ns.ip(&["-6", "addr", "add", &addr, "dev", dev, "nodad"])
        .map(drop)
}

/// A namespace joined to the bridge by a veth pair: `IFACE` inside, `port` on the bridge.
fn host(
    bridge: &Netns,
    name: &str,
    port: &str,
    mac: &str,
    ip: Ipv4Addr,
    prefix_len: u8,
) -> Result<Netns> {
    let ns = Netns::create(name.to_owned())?;
    bridge.add_veth(port, IFACE, &ns)?;
    bridge.ip(&["link", "set", port, "master", "br0", "up"])?;
    ns.ip(&["link", "set", IFACE, "address", mac, "up"])?;
    ns.ip(&["addr", "add", &format!("{ip}/{prefix_len}"), "dev", IFACE])?;
    Ok(ns)
}

/// Native XDP_TX on a veth delivers frames only when the peer has an XDP program too, so the
/// bridge-side port of the director gets the helper object's pass-through program.
fn attach_peer_pass(bridge: &Netns, port: &str) -> Result<Ebpf> {
    let path = bridge.path();
    let port = port.to_owned();
    std::thread::spawn(move || -> Result<Ebpf> {
        enter_current_thread(&path)?;
        let mut ebpf = tools::load(&[program_names::PASS])?;
        tools::program(&mut ebpf, program_names::PASS)?
            .attach(&port, XdpMode::Driver)
            .context("attaching the pass program")?;
        Ok(ebpf)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("attach thread panicked"))?
}
