//! IPv4 fragments of datagrams to a service, through the real object with
//! BPF_PROG_TEST_RUN: the first fragment is scheduled by its ports, the later ones follow it,
//! and a later fragment with no forwarded first fragment goes to the kernel.

use lb_common::{dest::DEST_F_RESOLVED, stats::Global};
use lb_userspace::maps::Maps;
use xdpvs_testbed::packets::{Frame, L4};

use crate::datapath::{
    DIRECTOR_MAC, RS_MACS, XDP_DROP, XDP_PASS, XDP_TX, dataplane, global, readdressed, run, tcp,
};

/// The dest id of the UDP service's first real server (the TCP service's take 0 and 1).
const UDP_RS1: u32 = 2;

/// The three fragments of a 3,000-byte UDP datagram from CLIENT:`sport` to VIP:`dport`.
fn datagram(sport: u16, dport: u16, id: u16) -> Vec<Vec<u8>> {
    let frame = Frame {
        l4: L4::Udp { sport, dport },
        ..tcp(0, 0, 0)
    };
    let fragments = frame.fragments(&[0xab; 3000], id, 1480);
    assert_eq!(fragments.len(), 3);
    fragments
}

#[test]
fn every_fragment_of_a_datagram_goes_where_its_first_went() {
    let dp = dataplane(true);
    // Two datagrams, on two flows (rr: rs1 then rs2), their fragments interleaved.
    let a = datagram(5000, 53, 1);
    let b = datagram(5001, 53, 2);
    for (frame, rs) in [
        (&a[0], 0),
        (&b[0], 1),
        (&b[1], 1),
        (&a[1], 0),
        (&a[2], 0),
        (&b[2], 1),
    ] {
        let (verdict, out) = run(&dp, frame);
        assert_eq!(verdict, XDP_TX);
        assert!(
            out == readdressed(frame, RS_MACS[rs], DIRECTOR_MAC),
            "not to rs{}",
            rs + 1
        );
    }
    assert_eq!(global(&dp, Global::Forwarded), 2, "the first fragments");
    assert_eq!(global(&dp, Global::FragmentForwarded), 4);
    let t = dp.dest_traffic(UDP_RS1).unwrap();
    assert_eq!((t.conns, t.packets), (1, 3));
    assert_eq!(t.bytes, a.iter().map(|f| f.len() as u64 - 14).sum::<u64>());
}

#[test]
fn a_later_fragment_before_its_first_goes_to_the_kernel_unchanged() {
    let dp = dataplane(true);
    let d = datagram(5002, 53, 2);
    assert_eq!(run(&dp, &d[2]), (XDP_PASS, d[2].clone()));
    assert_eq!(global(&dp, Global::FragmentUntracked), 1);
    assert_eq!(run(&dp, &d[0]).0, XDP_TX);
    assert_eq!(run(&dp, &d[1]).0, XDP_TX);
    assert_eq!(global(&dp, Global::FragmentForwarded), 1);
}

#[test]
fn fragments_not_for_a_service_go_to_the_kernel_unchanged() {
    let dp = dataplane(true);
    for frame in datagram(5003, 54, 3) {
        assert_eq!(run(&dp, &frame), (XDP_PASS, frame.clone()));
    }
    assert_eq!(global(&dp, Global::Passed), 1, "the first fragment");
    assert_eq!(global(&dp, Global::FragmentUntracked), 2);
}

#[test]
fn later_fragments_whose_server_lost_its_mac_are_dropped_not_split() {
    let mut dp = dataplane(true);
    let d = datagram(5004, 53, 4);
    assert_eq!(run(&dp, &d[0]).0, XDP_TX);
    let mut rs1 = dp.dest(UDP_RS1).unwrap();
    rs1.flags &= !DEST_F_RESOLVED;
    dp.write_dest(UDP_RS1, &rs1).unwrap();
    let (verdict, out) = run(&dp, &d[1]);
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(out, d[1], "dropped as it came");
    assert_eq!(global(&dp, Global::DestUnresolved), 1);
    assert_eq!(global(&dp, Global::FragmentForwarded), 0);
}
