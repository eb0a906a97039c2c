//! ICMP errors about flows to a VIP, through the real object with BPF_PROG_TEST_RUN: an error
//! about a flow reaches that flow's real server with only the MACs rewritten; anything else
//! ICMP goes to the kernel unchanged.

use std::net::Ipv4Addr;

use lb_common::{
    ipv4::{ICMP, ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED},
    state::tcp_flags::{ACK, SYN},
    stats::Global,
};
use lb_userspace::{dataplane::DataPlane, maps::Maps};
use xdpvs_testbed::packets::{Frame, IP_OFFSET, Ipv4, L4, ethernet, icmp};

use crate::datapath::{
    CLIENT, DIRECTOR_MAC, RS_MACS, VIP, XDP_PASS, XDP_TX, dataplane, dataplane_with, global,
    readdressed, rs_of, run, tcp,
};

const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// "Fragmentation needed" (destination unreachable, code 4).
const FRAG_NEEDED: (u8, u8) = (ICMP_DEST_UNREACH, 4);
const PORT_UNREACHABLE: (u8, u8) = (ICMP_DEST_UNREACH, 3);

/// A real server's reply on flow `client:cport -> VIP:vport`, as sent: from the VIP.
fn reply(cport: u16, vport: u16, udp: bool) -> Vec<u8> {
    let l4 = if udp {
        L4::Udp {
            sport: vport,
            dport: cport,
        }
    } else {
        L4::Tcp {
            sport: vport,
            dport: cport,
            flags: ACK,
        }
    };
    let frame = Frame {
        src: VIP,
        dst: CLIENT,
        l4,
        ..tcp(0, 0, 0)
    };
    frame.build(&[0x55; 1400])[IP_OFFSET..].to_vec()
}

/// An ICMP error from the router to the VIP quoting the first 28 bytes of `quoted` (the IP
/// header and 8 bytes of transport, as RFC 792 asks at least), with next-hop MTU 1400.
fn error_frame(kind: (u8, u8), quoted: &[u8]) -> Vec<u8> {
    quoting(kind, &quoted[..quoted.len().min(28)])
}

/// An ICMP error from the router to the VIP whose body is `quote`.
fn quoting(kind: (u8, u8), quote: &[u8]) -> Vec<u8> {
    let message = icmp(kind.0, kind.1, [0, 0, 0x05, 0x78], quote);
    let ip = Ipv4 {
        src: ROUTER,
        dst: VIP,
        proto: ICMP,
        id: 7,
        flags_offset: 0,
    };
    ethernet(DIRECTOR_MAC, ROUTER_MAC, None, &ip.packet(&message))
}

/// A UDP datagram from CLIENT:`sport` to VIP:53.
fn udp(sport: u16) -> Vec<u8> {
    Frame {
        l4: L4::Udp { sport, dport: 53 },
        ..tcp(0, 0, 0)
    }
    .build(b"q")
}

/// Opens flows from CLIENT ports 1000 (to rs1) and 1001 (to rs2) on the rr service.
fn two_flows() -> DataPlane {
    let dp = dataplane(true);
    for (port, rs) in [(1000, 0), (1001, 1)] {
        assert_eq!(rs_of(&run(&dp, &tcp(port, 80, SYN).build(b"")).1), rs);
    }
    dp
}

#[test]
fn frag_needed_about_a_flow_reaches_its_real_server_with_only_the_macs_rewritten() {
    let dp = two_flows();
    let before = dp.dest_traffic(1).unwrap();
    let frame = error_frame(FRAG_NEEDED, &reply(1001, 80, false));
    assert_eq!(
        run(&dp, &frame),
        (XDP_TX, readdressed(&frame, RS_MACS[1], DIRECTOR_MAC))
    );
    assert_eq!(global(&dp, Global::IcmpForwarded), 1);
    assert_eq!(global(&dp, Global::Forwarded), 2, "the two SYNs only");
    let after = dp.dest_traffic(1).unwrap();
    assert_eq!(
        (after.packets - before.packets, after.conns - before.conns),
        (1, 0),
        "counted as the flow's packet, not a connection"
    );
    assert_eq!(dp.flows().unwrap().len(), 2, "no flow created");
}

#[test]
fn port_unreachable_and_time_exceeded_follow_their_flows_too() {
    let dp = two_flows();
    let (verdict, out) = run(&dp, &udp(1002));
    assert_eq!(verdict, XDP_TX);
    let udp_rs = rs_of(&out);
    let frame = error_frame(PORT_UNREACHABLE, &reply(1002, 53, true));
    assert_eq!(
        run(&dp, &frame),
        (XDP_TX, readdressed(&frame, RS_MACS[udp_rs], DIRECTOR_MAC))
    );
    let frame = error_frame((ICMP_TIME_EXCEEDED, 0), &reply(1000, 80, false));
    assert_eq!(
        run(&dp, &frame),
        (XDP_TX, readdressed(&frame, RS_MACS[0], DIRECTOR_MAC))
    );
    // A quoted header with options (IHL 6): its ports are found after them.
    let mut quoted = reply(1001, 80, false);
    quoted[0] = 0x46;
    quoted.splice(20..20, [1, 1, 1, 0]);
    let frame = quoting(FRAG_NEEDED, &quoted[..32]);
    assert_eq!(
        run(&dp, &frame),
        (XDP_TX, readdressed(&frame, RS_MACS[1], DIRECTOR_MAC))
    );
    assert_eq!(global(&dp, Global::IcmpForwarded), 3);
}

#[test]
fn icmp_without_an_owner_passes_unchanged() {
    let dp = two_flows();
    let flow = reply(1001, 80, false);
    let mut from_elsewhere = flow.clone();
    from_elsewhere[12..16].copy_from_slice(&[10, 77, 0, 99]);
    let mut later_fragment = flow.clone();
    later_fragment[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
    let mut bad_ihl = flow.clone();
    bad_ihl[0] = 0x44;
    let echo = {
        let ip = Ipv4 {
            src: CLIENT,
            dst: VIP,
            proto: ICMP,
            id: 9,
            flags_offset: 0,
        };
        ethernet(
            DIRECTOR_MAC,
            ROUTER_MAC,
            None,
            &ip.packet(&icmp(8, 0, [0, 1, 0, 1], b"ping")),
        )
    };
    let frames = [
        (
            "no flow (rr)",
            error_frame(FRAG_NEEDED, &reply(1009, 80, false)),
        ),
        (
            "not a service",
            error_frame(FRAG_NEEDED, &reply(1001, 81, false)),
        ),
        (
            "quote not from the VIP",
            error_frame(FRAG_NEEDED, &from_elsewhere),
        ),
        (
            "quote of a later fragment",
            error_frame(FRAG_NEEDED, &later_fragment),
        ),
        ("quoted IHL 4", error_frame(FRAG_NEEDED, &bad_ihl)),
        (
            "4 quoted transport bytes",
            quoting(FRAG_NEEDED, &flow[..24]),
        ),
        ("redirect", error_frame((5, 1), &flow)),
        ("echo request", echo),
    ];
    for (what, frame) in frames {
        assert_eq!(run(&dp, &frame), (XDP_PASS, frame.clone()), "{what}");
    }
    assert_eq!(global(&dp, Global::IcmpForwarded), 0);
    assert_eq!(global(&dp, Global::Passed), 8);
}

#[test]
fn for_hashing_schedulers_an_error_without_an_entry_goes_where_the_client_would() {
    for scheduler in ["sh", "mh"] {
        let dp = dataplane_with(scheduler, 0, &[1, 1, 1], true);
        for last in 1..=12u8 {
            let client = Ipv4Addr::new(10, 77, 1, last);
            let mut quoted = reply(2000, 80, false);
            quoted[16..20].copy_from_slice(&client.octets());
            let (verdict, out) = run(&dp, &error_frame(FRAG_NEEDED, &quoted));
            assert_eq!(verdict, XDP_TX, "{scheduler} {client}");
            let flows = dp.flows().unwrap().len();
            assert_eq!(flows, usize::from(last) - 1, "an error creates no flow");
            let syn = Frame {
                src: client,
                ..tcp(2000, 80, SYN)
            };
            let (_, first) = run(&dp, &syn.build(b""));
            assert_eq!(rs_of(&out), rs_of(&first), "{scheduler} {client}");
        }
    }
}
