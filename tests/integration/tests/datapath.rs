//! The XDP program in the kernel, packet by packet, with BPF_PROG_TEST_RUN on the real object:
//! verdicts, exact output frames, flow stickiness and counters; and that object holds nothing
//! but the load balancer.

use std::{collections::HashSet, net::Ipv4Addr};

use crate::expiry::expire_after;
use aya::{
    EbpfLoader,
    programs::{TestRun, TestRunOptions},
};
use lb_common::{
    DEFAULT_MAX_TEMPLATES, MAX_DESTS,
    addr::Addr,
    dest::{Dest, DestConns},
    map_names, program_names,
    sched::{
        self, Scheduler,
        flags::{SH_FALLBACK, SH_PORT},
        locality,
    },
    state::{
        Timeouts,
        tcp_flags::{ACK, FIN, RST, SYN},
    },
    stats::Global,
    tools,
};
use lb_userspace::{
    dataplane::{DataPlane, monotonic_ns},
    engine::Engine,
    locality as locality_expiry,
    maps::{Maps, live_conns},
    model::{DestSpec, Persistence, Protocol, ServiceAddr, ServiceSpec},
    neigh::Neighbour,
};
use xdpvs_testbed::{
    direct,
    packets::{Frame, IP_OFFSET, L4, set_ipv4_checksum},
};

pub(crate) const XDP_DROP: u32 = 1;
pub(crate) const XDP_PASS: u32 = 2;
pub(crate) const XDP_TX: u32 = 3;

pub(crate) const DIRECTOR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub(crate) const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
pub(crate) const RS_MACS: [[u8; 6]; 3] = [
    [2, 0, 0, 0, 0, 0x21],
    [2, 0, 0, 0, 0, 0x22],
    [2, 0, 0, 0, 0, 0x23],
];
/// Connection table size of the test data planes.
pub(crate) const FLOW_TABLE: u32 = 65_536;
pub(crate) const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
pub(crate) const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);

/// A private data plane (no pins) with a TCP service on VIP:80 and a UDP service on VIP:53,
/// both with `scheduler` over real servers of the given weights, whose MACs are `RS_MACS`
/// (known unless `resolved` is false).
pub(crate) fn dataplane_with(
    scheduler: &str,
    flags: u8,
    weights: &[u32],
    resolved: bool,
) -> DataPlane {
    dataplane_from(scheduler, flags, None, weights, resolved)
}

/// As [`dataplane_with`], with client persistence.
pub(crate) fn dataplane_from(
    scheduler: &str,
    flags: u8,
    persistence: Option<Persistence>,
    weights: &[u32],
    resolved: bool,
) -> DataPlane {
    let specs = services(scheduler, flags, persistence, weights);
    direct::install(loaded(), &specs, |i| resolved.then_some(RS_MACS[i])).unwrap()
}

/// A TCP service on VIP:80 and a UDP service on VIP:53, both with `scheduler` over real
/// servers of the given weights.
pub(crate) fn services(
    scheduler: &str,
    flags: u8,
    persistence: Option<Persistence>,
    weights: &[u32],
) -> Vec<ServiceSpec> {
    [(Protocol::Tcp, 80), (Protocol::Udp, 53)]
        .into_iter()
        .map(|(protocol, port)| ServiceSpec {
            addr: ServiceAddr {
                protocol,
                addr: std::net::IpAddr::V4(VIP),
                port,
            },
            scheduler: Scheduler::from_name(scheduler).expect("a known scheduler"),
            flags,
            persistence,
            dests: weights
                .iter()
                .enumerate()
                .map(|(i, w)| DestSpec {
                    addr: std::net::IpAddr::V4(rs_ip(i)),
                    weight: *w,
                    u_threshold: 0,
                    l_threshold: 0,
                })
                .collect(),
        })
        .collect()
}

/// A private data plane (no pins) with nothing installed.
pub(crate) fn loaded() -> DataPlane {
    let mut dp = DataPlane::load(None, FLOW_TABLE, DEFAULT_MAX_TEMPLATES)
        .expect("the object loads and passes the verifier");
    dp.set_director(DIRECTOR_MAC, false).unwrap();
    dp
}

/// Expires the lblc/lblcr cache at `now`, as the daemon's tick does.
fn expire_localities(dp: &mut DataPlane, now: u64) {
    let caching: HashSet<u32> = dp
        .service_keys()
        .unwrap()
        .iter()
        .filter_map(|k| dp.service(k).unwrap())
        .filter(|s| s.scheduler().is_some_and(Scheduler::caches_destinations))
        .map(|s| s.id)
        .collect();
    locality_expiry::expire(dp, &caching, now).unwrap();
}

/// Round robin over two real servers of weight 1.
pub(crate) fn dataplane(resolved: bool) -> DataPlane {
    dataplane_with("rr", 0, &[1, 1], resolved)
}

pub(crate) fn rs_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 21 + i as u8)
}

/// Index of the real server a forwarded frame was addressed to.
pub(crate) fn rs_of(out: &[u8]) -> usize {
    RS_MACS
        .iter()
        .position(|m| out[..6] == m[..])
        .expect("forwarded to a real server")
}

pub(crate) fn tcp(sport: u16, dport: u16, flags: u8) -> Frame {
    Frame {
        dst_mac: DIRECTOR_MAC,
        src_mac: CLIENT_MAC,
        vlan: None,
        src: CLIENT,
        dst: VIP,
        l4: L4::Tcp {
            sport,
            dport,
            flags,
        },
    }
}

/// Runs the balancer on `frame`: (verdict, output frame).
pub(crate) fn run(dp: &DataPlane, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    };
    let r = dp
        .program(program_names::LOAD_BALANCER)
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// `frame` with its Ethernet addresses replaced.
pub(crate) fn readdressed(frame: &[u8], dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

pub(crate) fn global(dp: &DataPlane, g: Global) -> u64 {
    dp.globals()
        .unwrap()
        .into_iter()
        .find(|(k, _)| *k == g)
        .unwrap()
        .1
}

#[test]
fn the_daemons_object_holds_only_the_load_balancers_and_their_sweeper() {
    let ebpf = EbpfLoader::new()
        .map_max_entries(map_names::FLOWS, 1)
        .map_max_entries(map_names::PERSIST, 1)
        .load(lb_userspace::EBPF_OBJECT)
        .expect("the object parses");
    let mut programs: Vec<&str> = ebpf.programs().map(|(name, _)| name).collect();
    programs.sort_unstable();
    assert_eq!(
        programs,
        [
            program_names::LOAD_BALANCER,
            program_names::LOAD_BALANCER_V6,
            program_names::EXPIRE
        ]
    );
    for helper_map in [
        tools::map_names::GENERATOR,
        tools::map_names::GENERATOR_COUNTERS,
    ] {
        assert!(
            ebpf.map(helper_map).is_none(),
            "{helper_map} is in the object"
        );
    }
}

#[test]
fn vip_syn_is_sent_to_a_real_server_with_only_the_macs_rewritten() {
    let dp = dataplane(true);
    let frame = tcp(40000, 80, SYN).build(b"");
    let (verdict, out) = run(&dp, &frame);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(out, readdressed(&frame, RS_MACS[0], DIRECTOR_MAC));
    assert_eq!(global(&dp, Global::Forwarded), 1);
}

#[test]
fn non_vip_traffic_passes_unchanged() {
    let dp = dataplane(true);
    let other_ip = Frame {
        dst: Ipv4Addr::new(10, 77, 0, 2),
        ..tcp(40000, 80, SYN)
    }
    .build(b"");
    let other_port = tcp(40000, 22, SYN).build(b"");
    let udp_other_port = Frame {
        l4: L4::Udp {
            sport: 5000,
            dport: 80,
        },
        ..tcp(0, 0, 0)
    }
    .build(b"x");
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    for frame in [other_ip, other_port, udp_other_port, arp] {
        assert_eq!(run(&dp, &frame), (XDP_PASS, frame.clone()));
    }
    assert_eq!(global(&dp, Global::Passed), 4);
    assert_eq!(global(&dp, Global::Forwarded), 0);
}

#[test]
fn malformed_or_unhandled_packets_pass_unchanged() {
    let dp = dataplane(true);
    let syn = tcp(40000, 80, SYN).build(b"");
    // Cut inside the TCP header.
    let truncated = syn[..IP_OFFSET + 20 + 10].to_vec();
    // IP total length longer than the frame.
    let mut long_len = syn.clone();
    long_len[IP_OFFSET + 2..IP_OFFSET + 4].copy_from_slice(&200u16.to_be_bytes());
    set_ipv4_checksum(&mut long_len[IP_OFFSET..]);
    // A wrong header checksum.
    let mut bad_checksum = syn.clone();
    bad_checksum[IP_OFFSET + 10] ^= 1;
    // IP options (IHL 6, a no-op option word, checksum right).
    let mut options = syn.clone();
    options[IP_OFFSET] = 0x46;
    options[IP_OFFSET + 3] += 4;
    options.splice(IP_OFFSET + 20..IP_OFFSET + 20, [1, 1, 1, 0]);
    set_ipv4_checksum(&mut options[IP_OFFSET..]);
    // Just an Ethernet header claiming IPv4.
    let bare = syn[..IP_OFFSET].to_vec();
    for frame in [truncated, long_len, bad_checksum, options, bare] {
        assert_eq!(run(&dp, &frame), (XDP_PASS, frame.clone()));
    }
    assert_eq!(global(&dp, Global::Forwarded), 0);
}

#[test]
fn vlan_tagged_vip_syn_keeps_its_tag() {
    let dp = dataplane(true);
    let frame = Frame {
        vlan: Some(42),
        ..tcp(40000, 80, SYN)
    }
    .build(b"");
    let (verdict, out) = run(&dp, &frame);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(out, readdressed(&frame, RS_MACS[0], DIRECTOR_MAC));
    assert_eq!(&out[12..16], &[0x81, 0x00, 0, 42]);
}

#[test]
fn flows_stay_on_their_real_server_and_new_flows_round_robin() {
    let dp = dataplane(true);
    let dest_of = |sport, flags| run(&dp, &tcp(sport, 80, flags).build(b"")).1[..6].to_vec();
    assert_eq!(dest_of(1000, SYN), RS_MACS[0]);
    assert_eq!(dest_of(1001, SYN), RS_MACS[1]);
    assert_eq!(dest_of(1002, SYN), RS_MACS[0]);
    for _ in 0..3 {
        assert_eq!(dest_of(1001, ACK), RS_MACS[1]);
        assert_eq!(dest_of(1000, ACK), RS_MACS[0]);
    }
    // UDP flows too.
    let udp = |sport| {
        Frame {
            l4: L4::Udp { sport, dport: 53 },
            ..tcp(0, 0, 0)
        }
        .build(b"q")
    };
    let first = run(&dp, &udp(7000)).1[..6].to_vec();
    let second = run(&dp, &udp(7001)).1[..6].to_vec();
    assert_ne!(first, second);
    assert_eq!(run(&dp, &udp(7000)).1[..6], first[..]);
}

#[test]
fn connection_states_drive_active_and_inactive_counts() {
    let dp = dataplane(true);
    let send = |flags| assert_eq!(run(&dp, &tcp(2000, 80, flags).build(b"")).0, XDP_TX);
    let conns = |id| {
        let c = live_conns(&dp, id).unwrap();
        (c.active, c.inactive)
    };
    send(SYN);
    assert_eq!(conns(0), (0, 1), "SYN_RECV counts as inactive");
    send(ACK);
    assert_eq!(conns(0), (1, 0), "ESTABLISHED counts as active");
    send(ACK);
    assert_eq!(conns(0), (1, 0));
    send(FIN | ACK);
    assert_eq!(conns(0), (0, 1), "FIN_WAIT counts as inactive");
    send(RST);
    assert_eq!(conns(0), (0, 1), "CLOSE counts as inactive");
    assert_eq!(conns(1), (0, 0));
    let flows = dp.flows().unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].1.state().name(), "CLOSE");
}

#[test]
fn traffic_counters_match_what_was_sent() {
    let dp = dataplane(true);
    let frame = tcp(3000, 80, SYN).build(b"");
    let ack = tcp(3000, 80, ACK).build(&[7u8; 100]);
    run(&dp, &frame);
    for _ in 0..4 {
        run(&dp, &ack);
    }
    let t = dp.dest_traffic(0).unwrap();
    assert_eq!((t.conns, t.packets, t.bytes), (1, 5, 40 + 4 * 140));
    let s = dp.service_traffic(0).unwrap();
    assert_eq!((s.conns, s.packets, s.bytes), (1, 5, 40 + 4 * 140));
    assert_eq!(dp.dest_traffic(1).unwrap().packets, 0);
}

#[test]
fn many_slot_reads_and_writes_match_the_one_slot_ones() {
    let mut dp = dataplane(true);
    run(&dp, &tcp(3000, 80, SYN).build(b""));
    run(&dp, &tcp(3000, 80, ACK).build(&[7u8; 100]));
    // Runs of consecutive slots, gaps, out of order, both ends of the array.
    let ids = [MAX_DESTS - 1, 5, 6, 7, 0, 1, 9];
    let one_by_one = |dp: &DataPlane| -> Vec<_> {
        ids.iter()
            .map(|id| (dp.dest(*id).unwrap(), dp.counted_in(*id).unwrap()))
            .collect()
    };
    let traffic = dp.dest_traffic_at(&ids).unwrap();
    assert_eq!(traffic[4].packets, 2, "slot 0's packets, summed over CPUs");
    let single: Vec<_> = ids.iter().map(|id| dp.dest_traffic(*id).unwrap()).collect();
    assert_eq!(traffic, single);
    let batch = |dp: &DataPlane| -> Vec<_> {
        let conns = dp.counted_in_at(&ids).unwrap();
        dp.dests_at(&ids).unwrap().into_iter().zip(conns).collect()
    };
    assert_eq!(batch(&dp), one_by_one(&dp));
    assert_eq!(batch(&dp)[4].1.inactive + batch(&dp)[4].1.active, 1);

    let dests: Vec<Dest> = ids
        .iter()
        .map(|id| Dest {
            addr: Addr::v4(*id),
            weight: id % 7,
            generation: id + 1,
            ..Dest::default()
        })
        .collect();
    let released: Vec<DestConns> = ids
        .iter()
        .map(|id| DestConns {
            active: *id,
            ..DestConns::default()
        })
        .collect();
    dp.write_dests_at(&ids, &dests).unwrap();
    dp.write_released_at(&ids, &released).unwrap();
    let written: Vec<Dest> = ids.iter().map(|id| dp.dest(*id).unwrap()).collect();
    assert_eq!(written, dests);
    assert_eq!(dp.dests_at(&ids).unwrap(), dests);
    assert_eq!(dp.released_at(&ids).unwrap(), released);
    assert_eq!(dp.dest(8).unwrap(), Dest::default(), "the gap is untouched");

    assert!(dp.dests_at(&[MAX_DESTS - 1, MAX_DESTS]).is_err());
    assert!(dp.write_dests_at(&[MAX_DESTS], &[Dest::default()]).is_err());
    assert!(dp.dests_at(&[]).unwrap().is_empty());
}

#[test]
fn unresolved_real_servers_are_never_sent_to() {
    let dp = dataplane(false);
    let frame = tcp(4000, 80, SYN).build(b"");
    assert_eq!(run(&dp, &frame), (XDP_DROP, frame.clone()));
    assert_eq!(global(&dp, Global::NoDest), 1);
    assert_eq!(global(&dp, Global::Forwarded), 0, "a drop is not a forward");
}

fn new_flows(dp: &DataPlane, src: Ipv4Addr, ports: std::ops::Range<u16>) -> Vec<usize> {
    ports
        .map(|p| {
            rs_of(
                &run(
                    dp,
                    &Frame {
                        src,
                        ..tcp(p, 80, SYN)
                    }
                    .build(b""),
                )
                .1,
            )
        })
        .collect()
}

#[test]
fn wrr_gives_ipvs_interleaved_sequence() {
    let dp = dataplane_with("wrr", 0, &[4, 3, 2], true);
    let picks = new_flows(&dp, CLIENT, 100..118);
    assert_eq!(
        picks,
        [0, 0, 1, 0, 1, 2, 0, 1, 2, 0, 0, 1, 0, 1, 2, 0, 1, 2]
    );
}

#[test]
fn weighted_least_connection_schedulers_steer_away_from_busy_servers() {
    for sched in ["lc", "wlc", "sed", "nq"] {
        let dp = dataplane_with(sched, 0, &[1, 1, 1], true);
        // Two established connections on each of rs1 and rs2 (scheduled in turn).
        let first = new_flows(&dp, CLIENT, 200..202);
        for p in 200..202 {
            run(&dp, &tcp(p, 80, ACK).build(b""));
        }
        let next = new_flows(&dp, CLIENT, 300..301);
        assert_eq!(first.len(), 2);
        assert!(
            !first.contains(&next[0]),
            "{sched}: {first:?} then {next:?}"
        );
    }
}

#[test]
fn sh_keeps_a_client_on_one_server_and_spreads_clients() {
    let dp = dataplane_with("sh", 0, &[1, 1, 1], true);
    let mut seen = std::collections::BTreeSet::new();
    for last in 1..=40u8 {
        let client = Ipv4Addr::new(10, 77, 1, last);
        let picks = new_flows(&dp, client, 1000..1004);
        assert!(picks.iter().all(|p| *p == picks[0]), "{client}: {picks:?}");
        seen.insert(picks[0]);
    }
    assert_eq!(seen.len(), 3);
    // With sh-port, the source port picks the bucket too.
    let dp = dataplane_with("sh", SH_PORT, &[1, 1, 1], true);
    let picks: std::collections::BTreeSet<_> =
        new_flows(&dp, CLIENT, 1000..1030).into_iter().collect();
    assert_eq!(picks.len(), 3);
}

#[test]
fn sh_fallback_moves_clients_of_a_drained_server() {
    for (flags, expect_forwarded) in [(0, false), (SH_FALLBACK, true)] {
        let mut dp = dataplane_with("sh", flags, &[1, 1], true);
        let home = new_flows(&dp, CLIENT, 10..11)[0];
        let mut dest = dp.dest(home as u32).unwrap();
        dest.weight = 0;
        dp.write_dest(home as u32, &dest).unwrap();
        let (verdict, out) = run(&dp, &tcp(11, 80, SYN).build(b""));
        if expect_forwarded {
            assert_eq!((verdict, rs_of(&out)), (XDP_TX, 1 - home));
        } else {
            assert_eq!(verdict, XDP_DROP);
        }
    }
}

#[test]
fn mh_keeps_each_client_on_its_maglev_server() {
    let dp = dataplane_with("mh", 0, &[1, 1, 1], true);
    let mut seen = std::collections::BTreeSet::new();
    for last in 1..=40u8 {
        let picks = new_flows(&dp, Ipv4Addr::new(10, 77, 1, last), 3000..3004);
        assert!(picks.iter().all(|p| *p == picks[0]), "{picks:?}");
        seen.insert(picks[0]);
    }
    assert_eq!(seen.len(), 3);
}

#[test]
fn dh_sends_every_client_of_one_destination_to_one_server() {
    let dp = dataplane_with("dh", 0, &[1, 1, 1], true);
    let mut picks = vec![];
    for last in 1..=10u8 {
        picks.extend(new_flows(&dp, Ipv4Addr::new(10, 77, 1, last), 50..52));
    }
    let expected = sched::dh_bucket(u32::from(VIP)) as usize % 3;
    assert!(picks.iter().all(|p| *p == expected), "{picks:?}");
}

/// Establishes the flows from `CLIENT` with source ports `ports` (their ACK).
fn establish(dp: &DataPlane, ports: std::ops::Range<u16>) {
    for p in ports {
        assert_eq!(run(dp, &tcp(p, 80, ACK).build(b"")).0, XDP_TX);
    }
}

#[test]
fn lblc_caches_the_destinations_server_until_the_lblc_rule_moves_it() {
    let mut dp = dataplane_with("lblc", 0, &[1, 1, 1], true);
    // Every flow here is for one destination, the VIP: wlc chooses rs1 and the cache keeps
    // it, whatever the other clients (half-open flows add no active connection).
    assert_eq!(new_flows(&dp, CLIENT, 1..4), [0, 0, 0]);
    assert_eq!(new_flows(&dp, Ipv4Addr::new(10, 77, 1, 9), 1..3), [0, 0]);
    let cached = dp.localities().unwrap();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].0.addr, Addr::from(VIP));
    assert_eq!(cached[0].1.members[0].id, 0);
    // Two established on rs1 (above its weight 1) while rs2 is idle: the next flow goes to
    // the wlc choice, rs2, and the destination stays there.
    establish(&dp, 1..3);
    assert_eq!(new_flows(&dp, CLIENT, 10..13), [1, 1, 1]);
    assert_eq!(dp.localities().unwrap()[0].1.members[0].id, 1);
    // Unused for a day, the entry expires.
    expire_localities(&mut dp, monotonic_ns() + locality::EXPIRATION_NS);
    assert!(dp.localities().unwrap().is_empty());
}

#[test]
fn lblcr_adds_the_wlc_choice_to_an_overloaded_set() {
    let dp = dataplane_with("lblcr", 0, &[1, 1, 1], true);
    assert_eq!(new_flows(&dp, CLIENT, 1..3), [0, 0]);
    establish(&dp, 1..3);
    // rs1 is overloaded: rs2 joins the set, and as its least loaded member takes the next.
    assert_eq!(new_flows(&dp, CLIENT, 10..12), [1, 1]);
    let set = dp.localities().unwrap()[0].1;
    let ids: Vec<u32> = set.members[..set.len as usize]
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, [1, 0], "newest first");
}

#[test]
fn fo_sends_every_flow_to_the_heaviest_server_and_fails_over() {
    let mut dp = dataplane_with("fo", 0, &[1, 3, 3], true);
    assert_eq!(new_flows(&dp, CLIENT, 1..5), [1, 1, 1, 1]);
    let mut rs2 = dp.dest(1).unwrap();
    rs2.weight = 0;
    dp.write_dest(1, &rs2).unwrap();
    assert_eq!(new_flows(&dp, CLIENT, 10..12), [2, 2]);
}

#[test]
fn ovf_fills_the_heaviest_server_up_to_its_weight_then_overflows() {
    let dp = dataplane_with("ovf", 0, &[1, 2], true);
    // rs2 (weight 2) takes flows while it has at most 2 active, rs1 (weight 1) while it has at
    // most 1; then nothing is usable.
    let mut picks = vec![];
    for p in 1..6 {
        picks.extend(new_flows(&dp, CLIENT, p..p + 1));
        establish(&dp, p..p + 1);
    }
    assert_eq!(picks, [1, 1, 1, 0, 0]);
    assert_eq!(run(&dp, &tcp(6, 80, SYN).build(b"")).0, XDP_DROP);
}

#[test]
fn twos_spreads_flows_over_every_server() {
    let dp = dataplane_with("twos", 0, &[1, 1, 1], true);
    let picks: std::collections::BTreeSet<_> = new_flows(&dp, CLIENT, 1..31).into_iter().collect();
    assert_eq!(picks.len(), 3, "{picks:?}");
}

#[test]
fn weight_zero_drains_and_upper_threshold_overloads() {
    let mut dp = dataplane_with("rr", 0, &[1, 1], true);
    assert_eq!(new_flows(&dp, CLIENT, 1..2), [0]);
    // Drain rs1: its flow stays, new flows avoid it.
    let mut rs1 = dp.dest(0).unwrap();
    rs1.weight = 0;
    dp.write_dest(0, &rs1).unwrap();
    assert_eq!(rs_of(&run(&dp, &tcp(1, 80, ACK).build(b"")).1), 0);
    assert_eq!(new_flows(&dp, CLIENT, 2..5), [1, 1, 1]);
    // Back to weight 1 with an upper threshold of 2 connections (it holds 1).
    rs1.weight = 1;
    rs1.u_threshold = 2;
    dp.write_dest(0, &rs1).unwrap();
    let picks = new_flows(&dp, CLIENT, 10..16);
    assert_eq!(
        picks.iter().filter(|p| **p == 0).count(),
        1,
        "rs1 takes one more, then is overloaded: {picks:?}"
    );
    // Expire everything: the counts drop to zero and rs1 recovers.
    expire_after(&mut dp, 3600);
    for id in 0..2 {
        let c = live_conns(&dp, id).unwrap();
        assert_eq!((c.active, c.inactive), (0, 0), "dest {id}");
    }
    assert!(new_flows(&dp, CLIENT, 20..24).contains(&0));
}

#[test]
fn expiry_keeps_counts_equal_to_live_flows() {
    let mut dp = dataplane_with("rr", 0, &[1, 1], true);
    // Three established, two half-open; then the half-open ones time out (SYN_RECV 60 s).
    for p in 1..6 {
        run(&dp, &tcp(p, 80, SYN).build(b""));
    }
    for p in 1..4 {
        run(&dp, &tcp(p, 80, ACK).build(b""));
    }
    let total = |dp: &DataPlane| {
        (0..2)
            .map(|i| live_conns(dp, i).unwrap())
            .fold((0, 0), |a, c| (a.0 + c.active, a.1 + c.inactive))
    };
    assert_eq!(total(&dp), (3, 2));
    expire_after(&mut dp, 61);
    assert_eq!(total(&dp), (3, 0));
    assert_eq!(dp.flows().unwrap().len(), 3);
}

#[test]
fn persistence_keeps_a_client_and_its_netmask_on_one_server() {
    let p = Persistence {
        timeout: 300,
        netmask: lb_userspace::model::ClientMask::Netmask(Ipv4Addr::new(255, 255, 255, 0)),
    };
    let mut dp = dataplane_from("rr", 0, Some(p), &[1, 1, 1], true);
    let a = new_flows(&dp, CLIENT, 1..6);
    assert!(a.iter().all(|s| *s == a[0]), "{a:?}");
    // Same /24: same template. Another /24: the scheduler's next pick, then sticky too.
    assert!(
        new_flows(&dp, Ipv4Addr::new(10, 77, 0, 99), 1..4)
            .iter()
            .all(|s| *s == a[0])
    );
    let b = new_flows(&dp, Ipv4Addr::new(10, 78, 0, 1), 1..4);
    assert!(b.iter().all(|s| *s == b[0]) && b[0] != a[0], "{a:?} {b:?}");
    let t = dp.templates().unwrap();
    assert_eq!(t.len(), 2);
    // The template's server drained: as IPVS (expire_quiescent_template=0), the client stays
    // on it, while a client without a template goes elsewhere.
    let mut home = dp.dest(a[0] as u32).unwrap();
    home.weight = 0;
    dp.write_dest(a[0] as u32, &home).unwrap();
    assert_eq!(new_flows(&dp, CLIENT, 10..14), [a[0]; 4]);
    let fresh = new_flows(&dp, Ipv4Addr::new(10, 79, 0, 1), 1..3);
    assert!(fresh.iter().all(|s| *s != a[0]), "{fresh:?}");
    // A server that left (a new generation in its slot) is no template's server any more.
    home.weight = 1;
    home.generation = home.generation.wrapping_add(1);
    dp.write_dest(a[0] as u32, &home).unwrap();
    let moved = new_flows(&dp, CLIENT, 20..24);
    assert!(moved.iter().all(|s| *s == moved[0]), "{moved:?}");
}

#[test]
fn a_template_is_assured_once_a_flow_of_its_client_is_established() {
    let p = Persistence {
        timeout: 300,
        netmask: lb_userspace::model::ClientMask::Netmask(Ipv4Addr::BROADCAST),
    };
    let dp = dataplane_from("rr", 0, Some(p), &[1, 1], true);
    let assured = |dp: &DataPlane| {
        let t = dp.templates().unwrap();
        assert_eq!(t.len(), 1);
        t[0].1.state_name()
    };
    new_flows(&dp, CLIENT, 1..3);
    assert_eq!(assured(&dp), "NONE", "SYN_RECV flows leave it as made");
    establish(&dp, 2..3);
    assert_eq!(assured(&dp), "ASSURED");
    // It stays assured while its flows close, as IPVS's flag does.
    assert_eq!(run(&dp, &tcp(2, 80, FIN | ACK).build(b"")).0, XDP_TX);
    assert_eq!(assured(&dp), "ASSURED");
}

#[test]
fn a_port_zero_persistent_service_takes_the_vips_other_ports() {
    let service = |port, persistence| ServiceSpec {
        addr: ServiceAddr {
            protocol: Protocol::Tcp,
            addr: std::net::IpAddr::V4(VIP),
            port,
        },
        scheduler: Scheduler::Rr,
        flags: 0,
        persistence,
        dests: (0..3)
            .map(|i| DestSpec {
                addr: std::net::IpAddr::V4(rs_ip(i)),
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            })
            .collect(),
    };
    let all_ports = Persistence {
        timeout: 360,
        netmask: lb_userspace::model::ClientMask::Netmask(Ipv4Addr::BROADCAST),
    };
    let specs = [service(80, None), service(0, Some(all_ports))];
    let dp = direct::install(loaded(), &specs, |i| Some(RS_MACS[i])).unwrap();
    let to = |sport, dport| {
        let (verdict, out) = run(&dp, &tcp(sport, dport, SYN).build(b""));
        assert_eq!(verdict, XDP_TX, "port {dport}");
        rs_of(&out)
    };
    // Every port of the VIP but 80 goes to the port-0 service, whose one persistence
    // template keeps the client on one server across ports; port 80 to its own service
    // first, which round-robins.
    let other_ports: Vec<usize> = [(40001, 443), (40002, 22), (40003, 8080), (40004, 443)]
        .into_iter()
        .map(|(sport, dport)| to(sport, dport))
        .collect();
    assert!(
        other_ports.iter().all(|rs| *rs == other_ports[0]),
        "{other_ports:?}"
    );
    let port_80: Vec<usize> = (50000..50003).map(|sport| to(sport, 80)).collect();
    assert_eq!(port_80, [0, 1, 2]);
    assert_eq!(dp.templates().unwrap().len(), 1);
    // Only TCP: the VIP's UDP ports have no service.
    let udp = Frame {
        l4: L4::Udp {
            sport: 5000,
            dport: 443,
        },
        ..tcp(0, 0, 0)
    }
    .build(b"x");
    assert_eq!(run(&dp, &udp), (XDP_PASS, udp.clone()));
}

#[test]
fn adding_servers_moves_no_flow_and_a_removed_servers_flows_are_dropped() {
    let spec = |servers: &[usize]| ServiceSpec {
        addr: ServiceAddr {
            protocol: Protocol::Tcp,
            addr: std::net::IpAddr::V4(VIP),
            port: 80,
        },
        scheduler: Scheduler::Rr,
        flags: 0,
        persistence: None,
        dests: servers
            .iter()
            .map(|i| DestSpec {
                addr: std::net::IpAddr::V4(rs_ip(*i)),
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            })
            .collect(),
    };
    let mut engine = Engine::new(loaded(), 1024, Timeouts::default());
    let macs = (0..3).map(|i| (rs_ip(i).into(), Neighbour { mac: RS_MACS[i] }));
    engine.set_neighbours(macs.collect(), false).unwrap();
    engine.apply(&[spec(&[0, 1])]).unwrap();
    let flow = |dp: &DataPlane, port| rs_of(&run(dp, &tcp(port, 80, ACK).build(b"")).1);
    assert_eq!(new_flows(engine.maps(), CLIENT, 1..3), [0, 1]);
    // Add rs3 at the end of the list.
    engine.apply(&[spec(&[0, 1, 2])]).unwrap();
    let dp = engine.maps();
    assert_eq!(
        (flow(dp, 1), flow(dp, 2)),
        (0, 1),
        "adding a server moved a flow"
    );
    assert!(new_flows(dp, CLIENT, 10..13).contains(&2));
    // Remove rs1: its slot is retired (new generation, no MAC) and the list shrinks.
    let rs1 = engine.installed().services[0].dest_ids[0];
    engine.apply(&[spec(&[1, 2])]).unwrap();
    let dp = engine.maps();
    assert_eq!(flow(dp, 2), 1, "a flow of a kept server moved");
    // IPVS (expire_nodest_conn=0) drops the removed server's flow and counts nothing.
    let traffic = |dp: &DataPlane| {
        let id = engine.installed().services[0].id;
        dp.service_traffic(id).unwrap()
    };
    let before = traffic(dp);
    for _ in 0..2 {
        assert_eq!(run(dp, &tcp(1, 80, ACK).build(b"")).0, XDP_DROP);
    }
    assert_eq!(global(dp, Global::DestRemoved), 2);
    assert_eq!(traffic(dp), before, "a dropped packet counts in no service");
    let c = live_conns(dp, rs1).unwrap();
    assert_eq!(
        (c.active, c.inactive),
        (0, 0),
        "the retired slot counts nothing"
    );
}

#[test]
fn decisions_are_reported_only_when_the_daemon_asks() {
    use lb_common::event::EventKind;
    let mut dp = dataplane(true);
    assert_eq!(run(&dp, &tcp(40000, 80, SYN).build(b"")).0, XDP_TX);
    assert_eq!(dp.events().unwrap(), vec![], "debug off: nothing reported");

    dp.set_director(DIRECTOR_MAC, true).unwrap();
    assert_eq!(run(&dp, &tcp(40001, 80, SYN).build(b"")).0, XDP_TX);
    assert_eq!(run(&dp, &tcp(40001, 80, ACK).build(b"")).0, XDP_TX);
    let events = dp.events().unwrap();
    assert_eq!(
        events.len(),
        1,
        "one new flow, the established packet is quiet"
    );
    let e = events[0];
    assert_eq!(EventKind::from_u32(e.kind), Some(EventKind::Scheduled));
    assert_eq!((e.service, e.dest, e.proto), (0, 1, 6));
    assert_eq!(
        (e.src_addr, u16::from_be(e.src_port)),
        (Addr::from(CLIENT), 40001)
    );

    let mut drained = dataplane_with("rr", 0, &[0, 0], true);
    drained.set_director(DIRECTOR_MAC, true).unwrap();
    assert_eq!(run(&drained, &tcp(40002, 80, SYN).build(b"")).0, XDP_DROP);
    let events = drained.events().unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| EventKind::from_u32(e.kind))
            .collect::<Vec<_>>(),
        [Some(EventKind::NoDest)]
    );
}
