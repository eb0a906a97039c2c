//! End to end, in network namespaces: datagrams larger than the link (fragmented by the
//! client) and path-MTU discovery through the director, whose ICMP "fragmentation needed"
//! must reach the real server that sends too large a reply.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use xdpvs_testbed::{
    cluster::{Cluster, split, vip, wait_until},
    demo,
    netns::{Netns, unique_name},
    topology::{CLIENT_IP, IFACE, VIP},
};

/// The global counter `name` of the director.
fn counter(c: &Cluster, name: &str) -> u64 {
    let listing = c.daemon.listing().unwrap();
    listing
        .counters
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| *v)
}

#[test]
fn a_fragmented_udp_datagram_reaches_one_real_server_whole() {
    let c = Cluster::start("frag", 2, &demo::config(2)).unwrap();
    c.daemon.wait_resolved().unwrap();
    // 4,000 bytes over a 1,500-byte link: the client's stack sends three fragments. A real
    // server answers only a datagram it could reassemble, so every fragment reached it.
    let answers: Vec<String> = c.client(|| {
        (0..4)
            .map(|_| {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                s.send_to(&[0x5a; 4000], vip(53)).unwrap();
                let mut buf = [0u8; 256];
                let n = s
                    .recv(&mut buf)
                    .expect("a reply to the fragmented datagram");
                String::from_utf8_lossy(&buf[..n]).into_owned()
            })
            .collect()
    });
    let names: Vec<_> = answers.iter().map(|a| split(a).0).collect();
    assert_eq!(names, ["rs1", "rs2", "rs1", "rs2"], "{answers:?}");
    assert!(answers.iter().all(|a| split(a).1 == CLIENT_IP.to_string()));
    assert_eq!(
        counter(&c, "fragment_forwarded"),
        8,
        "two later fragments each"
    );
    assert_eq!(counter(&c, "fragment_untracked"), 0);
}

/// Port of the real server's large responses.
const BIG_PORT: u16 = 8080;
/// Bytes in a large response.
const BIG: usize = 64 * 1024;
/// The far client, behind a router whose link to it has a small MTU.
const FAR_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 10);
const ROUTER_NEAR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const ROUTER_FAR: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const SMALL_MTU: &str = "1280";

/// A router on the cluster's bridge, with a far client behind a 1,280-byte link that still
/// advertises an MSS for 1,500 bytes (so the real server's full-size segments meet the small
/// link at the router, which answers with "fragmentation needed" to the VIP).
struct FarSide {
    client: Netns,
    _router: Netns,
}

impl FarSide {
    fn build(c: &Cluster) -> FarSide {
        let router = Netns::create(unique_name("pmtu-rt")).unwrap();
        let client = Netns::create(unique_name("pmtu-far")).unwrap();
        let bridge = &c.topo.bridge;
        bridge.add_veth("prt", IFACE, &router).unwrap();
        bridge
            .ip(&["link", "set", "prt", "master", "br0", "up"])
            .unwrap();
        router.add_veth("far", IFACE, &client).unwrap();
        router.sysctl("net.ipv4.ip_forward", "1").unwrap();
        for (ns, dev, addr) in [
            (&router, IFACE, format!("{ROUTER_NEAR}/24")),
            (&router, "far", format!("{ROUTER_FAR}/24")),
            (&client, IFACE, format!("{FAR_CLIENT}/24")),
        ] {
            ns.ip(&["addr", "add", &addr, "dev", dev]).unwrap();
            ns.ip(&["link", "set", dev, "up"]).unwrap();
        }
        for (ns, dev) in [(&router, "far"), (&client, IFACE)] {
            ns.ip(&["link", "set", dev, "mtu", SMALL_MTU]).unwrap();
        }
        let via = ROUTER_FAR.to_string();
        client
            .ip(&["route", "add", "default", "via", &via, "advmss", "1460"])
            .unwrap();
        // As on the near client: no partial checksums for the director to pass on.
        client.exec("ethtool", &["-K", IFACE, "tx", "off"]).unwrap();
        let far_net = "10.78.0.0/24";
        for ns in c.topo.real_servers.iter().chain([&c.topo.director]) {
            ns.ip(&["route", "add", far_net, "via", &ROUTER_NEAR.to_string()])
                .unwrap();
        }
        FarSide {
            client,
            _router: router,
        }
    }
}

/// Serves one large response per connection on the real server in `ns`.
fn serve_big(ns: &Netns) {
    let listener = ns
        .enter(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, BIG_PORT)))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(&conn);
            if reader.read_line(&mut line).is_ok() {
                let _ = (&conn).write_all(&[b'x'; BIG]);
            }
        }
    });
}

#[test]
fn path_mtu_discovery_works_through_the_director() {
    let config = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}:{BIG_PORT}\"\nscheduler = \"rr\"\n\
         [[service.real_server]]\naddress = \"10.77.0.21\"\n"
    );
    let c = Cluster::start("pmtu", 1, &config).unwrap();
    c.daemon.wait_resolved().unwrap();
    let far = FarSide::build(&c);
    serve_big(&c.topo.real_servers[0]);
    let received = far
        .client
        .enter(|| -> std::io::Result<usize> {
            let mut s = TcpStream::connect_timeout(
                &SocketAddr::from((VIP, BIG_PORT)),
                Duration::from_secs(3),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"GET /big\n")?;
            let mut body = Vec::new();
            s.read_to_end(&mut body)?;
            Ok(body.len())
        })
        .unwrap();
    assert_eq!(
        received.unwrap(),
        BIG,
        "the whole response crossed the small link"
    );
    assert!(counter(&c, "icmp_forwarded") >= 1);
    // The real server's stack learnt the path's MTU from the forwarded error.
    let rs = &c.topo.real_servers[0];
    assert!(wait_until(Duration::from_secs(2), || {
        let route = rs
            .exec(
                "ip",
                &[
                    "route",
                    "get",
                    &FAR_CLIENT.to_string(),
                    "from",
                    &VIP.to_string(),
                ],
            )
            .unwrap();
        String::from_utf8_lossy(&route.stdout).contains(&format!("mtu {SMALL_MTU}"))
    }));
}
