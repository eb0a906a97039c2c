//! End to end, in network namespaces: a client, a director running xdpvsd, and real servers
//! that answer the client directly. Every test builds its own topology (unique names) and
//! everything is removed on drop, whatever the outcome.

use std::{
    net::{SocketAddr, UdpSocket},
    process::Command,
    time::Duration,
};

use anyhow::Result;
use xdpvs_testbed::{
    capture::{Capture, Captured},
    cluster::{Cluster, split, vip, wait_until},
    daemon::{Daemon, default_bin_dir},
    demo,
    netns::unique_name,
    servers::{HttpClient, http_get, udp_ask, udp_ask_on},
    topology::{self, CLIENT_IP, DIRECTOR_IP, IFACE, Topology, VIP},
};

/// InActConn summed over every real server of every service.
fn inactive(c: &Cluster) -> u32 {
    c.daemon
        .listing()
        .unwrap()
        .services
        .iter()
        .flat_map(|s| &s.dests)
        .map(|d| d.inactive)
        .sum()
}

fn mac_bytes(s: &str) -> [u8; 6] {
    lb_userspace::neigh::parse_mac(s).unwrap()
}

/// Checks that at least `min` replies came, each from real server 1's or 2's MAC, and some
/// from each.
fn assert_from_both_real_servers(replies: &[&Captured], min: usize) {
    let rs_macs: Vec<_> = (0..2)
        .map(|i| mac_bytes(&topology::real_server_mac(i)))
        .collect();
    assert!(replies.len() >= min, "{} replies", replies.len());
    assert!(
        replies.iter().all(|f| rs_macs.contains(&f.src_mac())),
        "a reply did not come from a real server"
    );
    for mac in &rs_macs {
        assert!(replies.iter().any(|f| f.src_mac() == *mac));
    }
}

#[test]
fn requests_to_the_vip_are_answered_directly_by_every_real_server() {
    let c = Cluster::start("direct", 2, &demo::config(2)).unwrap();
    c.daemon.wait_resolved().unwrap();
    let at_director = Capture::start(&c.topo.director, IFACE).unwrap();
    let at_client = Capture::start(&c.topo.client, IFACE).unwrap();
    let answers: Vec<String> = c.client(|| (0..6).map(|_| http_get(vip(80)).unwrap()).collect());
    let director_frames = at_director.finish().unwrap();
    let client_frames = at_client.finish().unwrap();

    // Round robin over both real servers, each seeing the client's own address.
    let names: Vec<_> = answers.iter().map(|a| split(a).0).collect();
    assert_eq!(
        names,
        ["rs1", "rs2", "rs1", "rs2", "rs1", "rs2"],
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|a| split(a).1 == CLIENT_IP.to_string()),
        "{answers:?}"
    );

    // Replies (from the VIP to the client) come straight from a real server's MAC...
    let replies: Vec<_> = client_frames
        .iter()
        .filter(|f| f.ipv4() == Some((VIP, CLIENT_IP)))
        .collect();
    assert_from_both_real_servers(&replies, 12);
    // ...and the director never sees one.
    assert!(
        director_frames
            .iter()
            .all(|f| f.ipv4().is_none_or(|(src, _)| src != VIP)),
        "the director saw a reply"
    );
    // The director's kernel holds no connection for the VIP.
    let ss = c.topo.director.exec("ss", &["-Htan"]).unwrap();
    let ss = String::from_utf8_lossy(&ss.stdout);
    assert!(
        !ss.contains(&format!("{VIP}:80")),
        "director has a socket for the VIP: {ss}"
    );
}

#[test]
fn every_packet_of_a_connection_reaches_one_real_server() {
    let c = Cluster::start("sticky", 2, &demo::config(2)).unwrap();
    c.daemon.wait_resolved().unwrap();
    let (mut conns, per_connection) = c.client(|| {
        let mut conns: Vec<HttpClient> = (0..2)
            .map(|_| HttpClient::connect(vip(80)).unwrap())
            .collect();
        let rounds: Vec<Vec<String>> = (0..10)
            .map(|_| {
                conns
                    .iter_mut()
                    .map(|h| split(&h.get().unwrap()).0)
                    .collect()
            })
            .collect();
        (conns, rounds)
    });
    // Requests alternate between the two connections; each connection keeps its server.
    assert!(
        per_connection.iter().all(|pair| pair == &per_connection[0]),
        "{per_connection:?}"
    );
    assert_ne!(
        per_connection[0][0], per_connection[0][1],
        "two connections, two real servers under rr"
    );
    // The director counted every packet of each connection on that connection's server only.
    let l = c.daemon.listing().unwrap();
    let tcp = &l.services[0];
    assert_eq!(
        tcp.dests
            .iter()
            .map(|d| d.traffic.conns)
            .collect::<Vec<_>>(),
        [1, 1]
    );
    assert_eq!([tcp.dests[0].active, tcp.dests[1].active], [1, 1], "{l:?}");
    assert_eq!(
        [tcp.dests[0].inactive, tcp.dests[1].inactive],
        [0, 0],
        "{l:?}"
    );
    // Still served after the listing, on the same servers.
    for (h, name) in conns.iter_mut().zip(&per_connection[0]) {
        assert_eq!(&split(&h.get().unwrap()).0, name);
    }
}

#[test]
fn udp_flows_are_balanced_and_sticky() {
    let c = Cluster::start("udp", 2, &demo::config(2)).unwrap();
    c.daemon.wait_resolved().unwrap();
    let (fresh, repeated) = c.client(|| {
        let fresh: Vec<_> = (0..4)
            .map(|_| split(&udp_ask(vip(53)).unwrap()).0)
            .collect();
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.connect(vip(53)).unwrap();
        let repeated: Vec<_> = (0..5).map(|_| udp_ask_on(&s).unwrap()).collect();
        (fresh, repeated)
    });
    assert_eq!(fresh, ["rs1", "rs2", "rs1", "rs2"]);
    assert!(repeated.iter().all(|r| r == &repeated[0]), "{repeated:?}");
    assert_eq!(split(&repeated[0]).1, CLIENT_IP.to_string());
    let l = c.daemon.listing().unwrap();
    assert_eq!(l.services[1].traffic.packets, 9);
}

#[test]
fn traffic_not_for_a_service_reaches_the_directors_own_stack() {
    let c = Cluster::start("local", 2, &demo::config(2)).unwrap();
    c.daemon.wait_resolved().unwrap();
    // A TCP service of the director's own, on its address and on the VIP at another port.
    let listener = c
        .topo
        .director
        .enter(|| std::net::TcpListener::bind("0.0.0.0:2222"))
        .unwrap()
        .unwrap();
    let accepted = std::thread::spawn(move || {
        (0..2)
            .map(|_| listener.accept().map(|(_, peer)| peer.ip().to_string()))
            .collect::<Vec<_>>()
    });
    c.client(|| {
        std::net::TcpStream::connect_timeout(
            &SocketAddr::from((DIRECTOR_IP, 2222)),
            Duration::from_secs(3),
        )
        .unwrap();
        std::net::TcpStream::connect_timeout(&vip(2222), Duration::from_secs(3)).unwrap();
    });
    let peers: Vec<_> = accepted
        .join()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(peers, [CLIENT_IP.to_string(), CLIENT_IP.to_string()]);
    c.topo
        .client
        .exec("ping", &["-c", "2", "-W", "2", &DIRECTOR_IP.to_string()])
        .unwrap();
    c.topo
        .client
        .exec("ping", &["-c", "1", "-W", "2", &VIP.to_string()])
        .unwrap();
    let l = c.daemon.listing().unwrap();
    let passed = l.counters.iter().find(|(k, _)| k == "passed").unwrap().1;
    assert!(passed >= 6, "passed counter {passed}");
}

#[test]
fn xdpvsadm_lists_in_ipvsadm_format_with_live_counts() {
    let c = Cluster::start("list", 2, &demo::config(2)).unwrap();
    c.daemon.wait_resolved().unwrap();
    let expected = |tcp: [u32; 2]| {
        let mut s = String::from(
            "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        );
        for (proto, port, inact) in [("TCP", 80, tcp), ("UDP", 53, [0, 0])] {
            s += &format!("{proto}  {VIP}:{port} rr\n");
            for (i, n) in inact.iter().enumerate() {
                s += &format!(
                    "  -> {:<28} Route   1      0          {n:<10}\n",
                    format!("{}:{port}", topology::real_server_ip(i))
                );
            }
        }
        s
    };
    let out = c.daemon.adm(&["-Ln"]).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected([0, 0]));
    // Four closed connections: each ends in FIN_WAIT on the director, an inactive connection.
    c.client(|| (0..4).for_each(|_| drop(http_get(vip(80)).unwrap())));
    assert!(
        wait_until(Duration::from_secs(5), || inactive(&c) == 4),
        "{:?}",
        c.daemon.listing()
    );
    let out = c.daemon.adm(&["-L", "-n"]).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected([2, 2]));
}

#[test]
fn unknown_macs_are_not_scheduled_and_changed_macs_are_picked_up() {
    // rs3's address has no host: it never resolves and never gets a flow.
    let mut config = demo::config(2);
    config = config.replacen(
        "[[service]]\nprotocol = \"udp\"",
        "[[service.real_server]]\naddress = \"10.77.0.99\"\n[[service]]\nprotocol = \"udp\"",
        1,
    );
    let c = Cluster::start("macs", 2, &config).unwrap();
    let resolved = |c: &Cluster| {
        c.daemon.listing().unwrap().services[0].dests[..2]
            .iter()
            .all(|d| d.mac.is_some())
    };
    assert!(wait_until(Duration::from_secs(15), || resolved(&c)));
    let names: Vec<_> = c.client(|| {
        (0..6)
            .map(|_| split(&http_get(vip(80)).unwrap()).0)
            .collect()
    });
    assert_eq!(names.iter().filter(|n| *n == "rs1").count(), 3, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "rs2").count(), 3, "{names:?}");
    let l = c.daemon.listing().unwrap();
    assert_eq!(l.services[0].dests[2].mac, None);
    assert_eq!(l.services[0].dests[2].traffic.packets, 0);

    // rs1 moves to a new MAC (a replaced NIC); the director learns it as from a gratuitous ARP.
    let new_mac = "02:00:00:00:01:21";
    c.topo.real_servers[0]
        .ip(&["link", "set", IFACE, "address", new_mac])
        .unwrap();
    c.topo
        .director
        .ip(&[
            "neigh",
            "replace",
            &topology::real_server_ip(0).to_string(),
            "lladdr",
            new_mac,
            "dev",
            IFACE,
        ])
        .unwrap();
    let rs1_mac = |c: &Cluster| c.daemon.listing().unwrap().services[0].dests[0].mac.clone();
    assert!(
        wait_until(Duration::from_secs(10), || rs1_mac(&c).as_deref()
            == Some(new_mac)),
        "new MAC not picked up"
    );
    let names: Vec<_> = c.client(|| {
        (0..4)
            .map(|_| split(&http_get(vip(80)).unwrap()).0)
            .collect()
    });
    assert!(names.contains(&"rs1".to_string()), "{names:?}");
}

fn xdp_prog_id(ns: &xdpvs_testbed::netns::Netns) -> Option<u64> {
    let out = ns
        .exec("ip", &["-j", "link", "show", "dev", IFACE])
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["xdp"]["prog"]["id"]
        .as_u64()
        .or_else(|| v[0]["xdp"]["attached"][0]["prog"]["id"].as_u64())
}

#[test]
fn daemon_stops_cleanly_and_refuses_bad_starts() {
    let topo = Topology::build("life", 1).unwrap();
    let bin = default_bin_dir();
    let mut d = Daemon::start(&bin, &topo.director, &unique_name("life"), None).unwrap();
    assert!(xdp_prog_id(&topo.director).is_some(), "not attached");
    let out = d.adm(&["-Ln"]).unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().count(),
        3,
        "no services yet"
    );

    // A second daemon on the same interface: the hook is taken, nothing is disturbed.
    let second = Daemon::paths(&bin, &unique_name("life2")).unwrap();
    let out = second
        .command(&topo.director, None)
        .unwrap()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !second.pin_dir.exists(),
        "the refused daemon left pins behind"
    );
    assert_eq!(d.adm(&["-Ln"]).unwrap().status.code(), Some(0));

    // SIGTERM stops the daemon but not the data plane: the program stays attached and its
    // link and maps pinned for the next daemon; `xdpvsd --unload` removes them.
    let attached = xdp_prog_id(&topo.director);
    let status = d.stop().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(xdp_prog_id(&topo.director), attached, "detached by SIGTERM");
    assert!(d.pin_dir.join("link").exists() && !d.socket.exists());
    let out = d.adm(&["-Ln"]).unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    let out = d.unload(&topo.director).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        xdp_prog_id(&topo.director),
        None,
        "still attached after --unload"
    );
    assert!(!d.pin_dir.exists(), "pins left behind");

    // Errors: missing interface, malformed config, not root.
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let p = Daemon::paths(&bin, &unique_name("bad")).unwrap();
    let mut cmd = p.command(&topo.director, None).unwrap();
    cmd.args(["--interface", "nosuch0"]);
    assert!(run(&mut cmd).contains("interface nosuch0 does not exist"));
    let mut cmd = p
        .command(
            &topo.director,
            Some("[[service]]\nprotocol = \"tcp\"\naddress = \"10.77.0.100\"\n"),
        )
        .unwrap();
    let msg = run(&mut cmd);
    assert!(
        msg.contains("xdpvsd.toml") && msg.contains("line 3"),
        "{msg}"
    );
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin.join("xdpvsd"))
        .args(["--interface", "lo"]);
    assert!(run(&mut cmd).contains("Permission denied (you must be root)"));
    assert_eq!(xdp_prog_id(&topo.director), None);
}

#[test]
fn ipv6_requests_to_the_vip_are_answered_directly_by_every_real_server() {
    let vip6 = topology::VIP6;
    let mut config =
        format!("[[service]]\nprotocol = \"tcp\"\naddress = \"[{vip6}]:80\"\nscheduler = \"rr\"\n");
    for i in 0..2 {
        config += &format!(
            "[[service.real_server]]\naddress = \"{}\"\n",
            topology::real_server_ip6(i)
        );
    }
    let c = Cluster::start("direct6", 2, &config).unwrap();
    // The real servers' MACs come from neighbour discovery.
    c.daemon.wait_resolved().unwrap();
    let at_client = Capture::start(&c.topo.client, IFACE).unwrap();
    let to = SocketAddr::from((vip6, 80));
    let answers: Vec<String> = c.client(move || (0..4).map(|_| http_get(to).unwrap()).collect());
    let client_frames = at_client.finish().unwrap();

    // Round robin, each real server seeing the client's own address.
    let names: Vec<_> = answers.iter().map(|a| split(a).0).collect();
    assert_eq!(names, ["rs1", "rs2", "rs1", "rs2"], "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| split(a).1 == topology::CLIENT_IP6.to_string()),
        "{answers:?}"
    );
    // TCP replies from the VIP come straight from the real servers' MACs (the director
    // answers neighbour discovery for the VIP).
    let replies: Vec<_> = client_frames
        .iter()
        .filter(|f| f.ipv6() == Some((vip6, topology::CLIENT_IP6, 6)))
        .collect();
    assert_from_both_real_servers(&replies, 8);

    // ipvsadm's IPv6 listing, and the connections it counted.
    let out = c.daemon.adm(&["-Ln"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TCP  [fd77::100]:80 rr\n"), "{text}");
    for i in 0..2 {
        let line = format!("  -> [{}]:80", topology::real_server_ip6(i));
        assert!(text.contains(&line), "{text}");
    }
    let conns = c.daemon.adm(&["-Lnc"]).unwrap();
    let conns = String::from_utf8_lossy(&conns.stdout);
    assert!(conns.contains("[fd77::10]:"), "{conns}");
}
