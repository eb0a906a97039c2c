//! IPv6 through the real object with BPF_PROG_TEST_RUN: the IPv4 program hands IPv6 frames to
//! the IPv6 one by a tail call, which balances them as IPVS does: extension headers it looks
//! through, fragments after their first, ICMPv6 errors to the flow's server, persistence by
//! prefix.

use std::net::{IpAddr, Ipv6Addr};

use lb_common::{sched::Scheduler, state::tcp_flags::SYN, stats::Global};
use lb_userspace::{
    dataplane::DataPlane,
    maps::Maps,
    model::{ClientMask, DestSpec, Persistence, Protocol, ServiceAddr, ServiceSpec},
};
use xdpvs_testbed::{
    direct,
    packets::{Frame6, L4, icmp},
};

use crate::datapath::{
    CLIENT_MAC, DIRECTOR_MAC, RS_MACS, XDP_PASS, XDP_TX, global, loaded, readdressed, rs_of, run,
};

const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);

fn rs(i: usize) -> IpAddr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x21 + i as u16).into()
}

/// TCP on [VIP]:80 and UDP on [VIP]:53 with rr over two real servers.
fn dataplane(persistence: Option<Persistence>) -> DataPlane {
    dataplane_with(Scheduler::Rr, persistence)
}

/// TCP on [VIP]:80 and UDP on [VIP]:53 with `scheduler` over two real servers.
fn dataplane_with(scheduler: Scheduler, persistence: Option<Persistence>) -> DataPlane {
    let specs: Vec<ServiceSpec> = [(Protocol::Tcp, 80), (Protocol::Udp, 53)]
        .into_iter()
        .map(|(protocol, port)| ServiceSpec {
            addr: ServiceAddr {
                protocol,
                addr: VIP.into(),
                port,
            },
            scheduler,
            flags: 0,
            persistence,
            dests: (0..2)
                .map(|i| DestSpec {
                    addr: rs(i),
                    weight: 1,
                    u_threshold: 0,
                    l_threshold: 0,
                })
                .collect(),
        })
        .collect();
    direct::install(loaded(), &specs, |i| Some(RS_MACS[i])).unwrap()
}

fn tcp(src: Ipv6Addr, sport: u16, flags: u8) -> Frame6 {
    Frame6 {
        dst_mac: DIRECTOR_MAC,
        src_mac: CLIENT_MAC,
        src,
        dst: VIP,
        ext: Vec::new(),
        l4: L4::Tcp {
            sport,
            dport: 80,
            flags,
        },
    }
}

/// Sends `frame` and checks that it left for a real server with only its MACs rewritten.
fn forwarded(dp: &DataPlane, frame: &[u8]) -> usize {
    let (action, out) = run(dp, frame);
    assert_eq!(action, XDP_TX);
    let rs = rs_of(&out);
    assert_eq!(out, readdressed(frame, RS_MACS[rs], DIRECTOR_MAC));
    rs
}

#[test]
fn ipv6_flows_round_robin_and_stay_on_their_server() {
    let dp = dataplane(None);
    let first: Vec<usize> = (1000..1004)
        .map(|port| forwarded(&dp, &tcp(CLIENT, port, SYN).build(b"")))
        .collect();
    assert_eq!(first, [0, 1, 0, 1]);
    for (port, rs) in (1000..1004).zip(&first) {
        let again = tcp(CLIENT, port, 0x10).build(b"hello");
        assert_eq!(forwarded(&dp, &again), *rs, "port {port}");
    }
    assert_eq!(global(&dp, Global::Forwarded), 8);
    let t = dp.dest_traffic(0).unwrap();
    assert_eq!((t.conns, t.packets), (2, 4));
}

#[test]
fn hashing_schedulers_keep_each_ipv6_client_on_one_server_and_spread_clients() {
    for scheduler in [Scheduler::Sh, Scheduler::Mh] {
        let dp = dataplane_with(scheduler, None);
        let client = |host| Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, host);
        let mut seen = [false; 2];
        for host in 1..40 {
            let first = forwarded(&dp, &tcp(client(host), 5000, SYN).build(b""));
            for port in 5001..5004 {
                let again = forwarded(&dp, &tcp(client(host), port, SYN).build(b""));
                assert_eq!(again, first, "{scheduler:?} host {host} port {port}");
            }
            seen[first] = true;
        }
        assert_eq!(seen, [true, true], "{scheduler:?} spreads clients");
    }
    // dh hashes the destination: every client of the VIP on one server.
    let dp = dataplane_with(Scheduler::Dh, None);
    let first = forwarded(&dp, &tcp(CLIENT, 6000, SYN).build(b""));
    for host in 1..20 {
        let other = Ipv6Addr::new(0x2001, 0xdb8, 8, 0, 0, 0, 0, host);
        assert_eq!(forwarded(&dp, &tcp(other, 6000, SYN).build(b"")), first);
    }
}

#[test]
fn extension_headers_ipvs_looks_through_are_balanced_the_rest_pass() {
    let dp = dataplane(None);
    let opts = vec![1, 4, 0, 0, 0, 0];
    let through = [
        vec![(0, opts.clone())],
        vec![(0, opts.clone()), (60, opts.clone())],
        vec![(43, vec![0, 0, 0, 0, 0, 0])],
        vec![(60, [opts.clone(), vec![0; 8]].concat())],
    ];
    for (i, ext) in through.into_iter().enumerate() {
        let frame = Frame6 {
            ext: ext.clone(),
            ..tcp(CLIENT, 2000 + i as u16, SYN)
        };
        let frame = frame.build(b"");
        forwarded(&dp, &frame);
        // The same flow without the headers stays where it went.
        let plain = tcp(CLIENT, 2000 + i as u16, 0x10).build(b"");
        assert_eq!(forwarded(&dp, &plain), forwarded(&dp, &frame), "{ext:?}");
    }
    let too_long = Frame6 {
        ext: vec![(60, opts.clone()); 5],
        ..tcp(CLIENT, 3000, SYN)
    }
    .build(b"");
    let esp = tcp(CLIENT, 3001, SYN).frame(50, &[0; 16]);
    let mapped = Frame6 {
        dst: std::net::Ipv4Addr::new(10, 77, 0, 100).to_ipv6_mapped(),
        ..tcp(CLIENT, 3002, SYN)
    }
    .build(b"");
    let mut jumbo = tcp(CLIENT, 3003, SYN).build(b"");
    jumbo[18..20].fill(0);
    for frame in [too_long, esp, mapped, jumbo] {
        assert_eq!(run(&dp, &frame), (XDP_PASS, frame.clone()));
    }
}

#[test]
fn a_datagrams_later_fragments_follow_its_first() {
    let dp = dataplane(None);
    let datagram = |sport: u16, id: u32| {
        Frame6 {
            l4: L4::Udp { sport, dport: 53 },
            ..tcp(CLIENT, 0, 0)
        }
        .fragments(&[0xab; 3000], id, 1232)
    };
    for (sport, id) in [(5000, 1), (5001, 2)] {
        let fragments = datagram(sport, id);
        assert_eq!(fragments.len(), 3);
        let servers: Vec<usize> = fragments.iter().map(|f| forwarded(&dp, f)).collect();
        assert!(servers.iter().all(|s| *s == servers[0]), "{servers:?}");
    }
    assert_eq!(global(&dp, Global::FragmentForwarded), 4);
    // A later fragment of a datagram whose first never came goes to the kernel.
    let orphan = datagram(5002, 3).pop().unwrap();
    assert_eq!(run(&dp, &orphan), (XDP_PASS, orphan.clone()));
    assert_eq!(global(&dp, Global::FragmentUntracked), 1);
}

#[test]
fn packet_too_big_about_a_flow_reaches_its_server_nd_and_echo_pass() {
    let dp = dataplane(None);
    let rs = forwarded(&dp, &tcp(CLIENT, 40000, SYN).build(b""));
    forwarded(&dp, &tcp(CLIENT, 40001, SYN).build(b""));
    // The real server's reply (VIP:80 -> client:40000) met a smaller link.
    let reply = Frame6 {
        src: VIP,
        dst: CLIENT,
        l4: L4::Tcp {
            sport: 80,
            dport: 40000,
            flags: 0x10,
        },
        ..tcp(CLIENT, 0, 0)
    }
    .build(&[0; 1400]);
    let router = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let to_vip = Frame6 {
        src: router,
        ..tcp(CLIENT, 0, 0)
    };
    let too_big = to_vip.frame(
        58,
        &icmp(2, 0, 1280u32.to_be_bytes(), &reply[14..14 + 1200]),
    );
    assert_eq!(forwarded(&dp, &too_big), rs);
    assert_eq!(global(&dp, Global::IcmpForwarded), 1);
    // About a flow the director never saw: the kernel's.
    let mut unknown = reply.clone();
    unknown[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&40999u16.to_be_bytes());
    let stray = to_vip.frame(58, &icmp(2, 0, [0; 4], &unknown[14..14 + 1200]));
    let solicit = to_vip.frame(58, &icmp(135, 0, [0; 4], &VIP.octets()));
    let echo = to_vip.frame(58, &icmp(128, 0, [0, 1, 0, 1], b"ping"));
    for frame in [stray, solicit, echo] {
        assert_eq!(run(&dp, &frame), (XDP_PASS, frame.clone()));
    }
}

#[test]
fn persistence_keeps_a_clients_prefix_on_one_server() {
    let dp = dataplane(Some(Persistence {
        timeout: 300,
        netmask: ClientMask::Prefix(64),
    }));
    let net1 = |host| Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, host);
    let net2 = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
    let first = forwarded(&dp, &tcp(net1(1), 1000, SYN).build(b""));
    for host in 2..6 {
        let rs = forwarded(&dp, &tcp(net1(host), 1000 + host, SYN).build(b""));
        assert_eq!(rs, first, "host {host} of the same /64");
    }
    assert_ne!(forwarded(&dp, &tcp(net2, 1000, SYN).build(b"")), first);
}

#[test]
fn truncated_ipv6_frames_are_never_forwarded() {
    let dp = dataplane(None);
    let whole = Frame6 {
        ext: vec![(0, vec![1, 4, 0, 0, 0, 0])],
        ..tcp(CLIENT, 7000, SYN)
    }
    .build(b"data");
    for len in 14..whole.len() {
        let cut = &whole[..len];
        assert_eq!(run(&dp, cut), (XDP_PASS, cut.to_vec()), "{len} bytes");
    }
    forwarded(&dp, &whole);
}
