//! The sweeper in the kernel (`xdpvs_expire`, BPF_PROG_TEST_RUN on the real object): idle flows
//! are removed and counted out of their real servers exactly once, from the state they are in;
//! a flow with a packet after it went idle survives, also while packets race the sweep on the
//! other CPU; templates outlive their last flow by their timeout. Flows are made idle by
//! moving their times of last use back, as time passing would.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, Ordering},
    thread,
};

use aya::{
    maps::{HashMap, MapData, MapInfo},
    programs::{TestRun, TestRunOptions},
};
use lb_common::{
    DEFAULT_MAX_TEMPLATES,
    expiry::NS,
    flow::{Flow, FlowKey, Persist, PersistKey},
    map_names, program_names,
    state::{
        ConnState,
        tcp_flags::{ACK, FIN, SYN},
    },
};
use lb_userspace::{
    dataplane::DataPlane,
    maps::{Maps, live_conns},
    model::Persistence,
};
use xdpvs_testbed::{direct, packets::Frame};

use crate::{
    datapath::{RS_MACS, XDP_TX, dataplane, dataplane_from, rs_of, run, services, tcp},
    race::pin_to,
};

/// The program's hash map `name`, opened anew by the id the sweeper holds it under.
fn hash_map<K: aya::Pod, V: aya::Pod>(dp: &DataPlane, name: &str) -> HashMap<MapData, K, V> {
    let ids = dp
        .program(program_names::EXPIRE)
        .info()
        .unwrap()
        .map_ids()
        .unwrap()
        .expect("the kernel reports the program's maps");
    let id = ids
        .into_iter()
        .find(|id| MapInfo::from_id(*id).unwrap().name_as_str() == Some(name))
        .unwrap_or_else(|| panic!("the sweeper uses {name}"));
    HashMap::try_from(aya::maps::Map::HashMap(MapData::from_id(id).unwrap())).unwrap()
}

/// Moves every flow's and template's time of last use `secs` seconds back.
fn age(dp: &DataPlane, secs: u64) {
    let mut flows = hash_map::<FlowKey, Flow>(dp, map_names::FLOWS);
    for (key, mut flow) in dp.flows().unwrap() {
        flow.last_seen_ns -= secs * NS;
        flows.insert(key, flow, 0).unwrap();
    }
    let mut templates = hash_map::<PersistKey, Persist>(dp, map_names::PERSIST);
    for (key, mut t) in dp.templates().unwrap() {
        t.last_used_ns -= secs * NS;
        templates.insert(key, t, 0).unwrap();
    }
}

/// Runs the sweeper `secs` seconds later than now, as far as the tables can tell.
pub(crate) fn expire_after(dp: &mut DataPlane, secs: u64) {
    age(dp, secs);
    dp.expire().unwrap();
}

/// (ActiveConn, InActConn) summed over dest slots `0..n`.
fn totals(dp: &DataPlane, n: u32) -> (u32, u32) {
    (0..n)
        .map(|id| live_conns(dp, id).unwrap())
        .fold((0, 0), |(a, i), c| (a + c.active, i + c.inactive))
}

/// (ActiveConn, InActConn) as the flows in the table say.
fn tracked(dp: &DataPlane) -> (u32, u32) {
    dp.flows()
        .unwrap()
        .iter()
        .fold((0, 0), |(a, i), (_, f)| match f.state().is_active() {
            true => (a + 1, i),
            false => (a, i + 1),
        })
}

/// Sends one packet with `flags` of the client's flow from `port` to VIP:80.
fn send(dp: &DataPlane, port: u16, flags: u8) -> Vec<u8> {
    let (verdict, out) = run(dp, &tcp(port, 80, flags).build(b""));
    assert_eq!(verdict, XDP_TX, "port {port}");
    out
}

#[test]
fn an_idle_flow_is_removed_and_counted_out_exactly_once() {
    let mut dp = dataplane(true);
    for port in 1..=4 {
        send(&dp, port, SYN);
    }
    for port in 1..=2 {
        send(&dp, port, ACK);
    }
    assert_eq!(totals(&dp, 2), (2, 2));
    // SYN_RECV lasts 60 s: not over after 59, over after 61.
    expire_after(&mut dp, 59);
    assert_eq!(dp.flows().unwrap().len(), 4);
    expire_after(&mut dp, 2);
    assert_eq!(dp.flows().unwrap().len(), 2);
    assert_eq!(totals(&dp, 2), (2, 0));
    // Nothing more is idle: another sweep counts nothing out again.
    dp.expire().unwrap();
    assert_eq!(totals(&dp, 2), (2, 0));
    // ESTABLISHED lasts 900 s: 899 s idle so far.
    expire_after(&mut dp, 838);
    assert_eq!(dp.flows().unwrap().len(), 2);
    expire_after(&mut dp, 2);
    assert!(dp.flows().unwrap().is_empty());
    dp.expire().unwrap();
    assert_eq!(totals(&dp, 2), (0, 0));
}

#[test]
fn a_flow_with_a_packet_after_it_went_idle_survives_and_an_expired_one_starts_anew() {
    let mut dp = dataplane(true);
    let first: Vec<usize> = (1..=2)
        .map(|port| {
            send(&dp, port, SYN);
            rs_of(&send(&dp, port, ACK))
        })
        .collect();
    age(&dp, 901);
    // Port 1 sends between the two runs of the sweeper; port 2 stays idle.
    assert_eq!(rs_of(&send(&dp, 1, ACK)), first[0]);
    dp.expire().unwrap();
    let flows = dp.flows().unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].0.src_port, 1u16.to_be());
    assert_eq!(totals(&dp, 2), (1, 0));
    // Port 2's next packet is a new flow (counted in once), as in IPVS.
    send(&dp, 2, ACK);
    assert_eq!(dp.flows().unwrap().len(), 2);
    assert_eq!(totals(&dp, 2), (2, 0));
}

#[test]
fn a_flow_that_moved_to_fin_wait_is_counted_out_of_inactconn() {
    let mut dp = dataplane(true);
    send(&dp, 7, SYN);
    send(&dp, 7, ACK);
    assert_eq!(totals(&dp, 2), (1, 0));
    send(&dp, 7, FIN | ACK);
    assert_eq!(dp.flows().unwrap()[0].1.state(), ConnState::FinWait);
    assert_eq!(totals(&dp, 2), (0, 1));
    // FIN_WAIT lasts 120 s.
    expire_after(&mut dp, 119);
    assert_eq!(totals(&dp, 2), (0, 1));
    expire_after(&mut dp, 2);
    assert!(dp.flows().unwrap().is_empty());
    for id in 0..2 {
        let c = live_conns(&dp, id).unwrap();
        assert_eq!((c.active, c.inactive), (0, 0), "dest {id}");
    }
}

#[test]
fn packets_racing_the_sweep_keep_their_flows_and_the_counts_exact() {
    const N: u16 = 20_000;
    let mut dp = dataplane(true);
    for port in 1..=N {
        send(&dp, port, SYN);
        send(&dp, port, ACK);
    }
    age(&dp, 901);
    // The even ports close (ESTABLISHED -> FIN_WAIT) on CPU 1 while CPU 0 sweeps; the odd ones
    // stay idle. A flow the sweeper claims before its packet is counted out from
    // ESTABLISHED and its packet starts a new flow; one whose packet comes first survives and
    // is counted out of nothing.
    let swept = AtomicBool::new(false);
    let program = dp.program(program_names::LOAD_BALANCER);
    let frames: Vec<Vec<u8>> = (2..=N)
        .step_by(2)
        .map(|p| tcp(p, 80, FIN | ACK).build(b""))
        .collect();
    let passes = thread::scope(|s| {
        let sender = s.spawn(|| {
            pin_to(1);
            let mut out = vec![0u8; frames[0].len() + 256];
            let mut passes = 0;
            // Every flow gets a packet after the sweep too.
            loop {
                let done = swept.load(Ordering::Acquire);
                for frame in &frames {
                    let opts = TestRunOptions {
                        data_in: Some(frame),
                        data_out: Some(&mut out),
                        ..TestRunOptions::default()
                    };
                    program.test_run(opts).expect("BPF_PROG_TEST_RUN");
                }
                passes += 1;
                if done {
                    return passes;
                }
            }
        });
        pin_to(0);
        let sweeper = dp.program(program_names::EXPIRE);
        let frame = [0u8; 64];
        let opts = TestRunOptions {
            data_in: Some(&frame),
            ..TestRunOptions::default()
        };
        sweeper.test_run(opts).expect("BPF_PROG_TEST_RUN");
        swept.store(true, Ordering::Release);
        sender.join().unwrap()
    });
    assert!(passes >= 2, "the sweep ran during a pass");
    let flows = dp.flows().unwrap();
    let ports: Vec<u16> = flows
        .iter()
        .map(|(k, _)| u16::from_be(k.src_port))
        .collect();
    assert!(ports.iter().all(|p| p % 2 == 0), "the idle flows are gone");
    assert_eq!(flows.len(), usize::from(N / 2), "every closing flow is in");
    assert_eq!(totals(&dp, 2), tracked(&dp));
    // And when everything expires, nothing is left counted.
    expire_after(&mut dp, 901);
    assert_eq!(totals(&dp, 2), (0, 0));
}

#[test]
fn a_million_expired_flows_leave_every_counter_at_zero() {
    const FLOWS: u32 = 1 << 20;
    let dp = DataPlane::load(None, FLOWS, DEFAULT_MAX_TEMPLATES).unwrap();
    let mut dp = direct::install(dp, &services("rr", 0, None, &[1, 1, 1]), |i| {
        Some(RS_MACS[i])
    })
    .unwrap();
    // Clients 10.78.0.0/16, ports 1..=16: every fourth established, the rest SYN_RECV.
    for i in 0..FLOWS {
        let src = Ipv4Addr::from(0x0a4e_0000 + (i >> 4));
        let port = (i & 15) as u16 + 1;
        let flags = if i % 4 == 0 { ACK } else { SYN };
        let frame = Frame {
            src,
            ..tcp(port, 80, flags)
        }
        .build(b"");
        assert_eq!(run(&dp, &frame).0, XDP_TX, "flow {i}");
    }
    assert_eq!(dp.flows().unwrap().len(), FLOWS as usize);
    assert_eq!(totals(&dp, 3), (FLOWS / 4, FLOWS / 4 * 3));
    expire_after(&mut dp, 901);
    assert!(dp.flows().unwrap().is_empty());
    for id in 0..3 {
        let c = live_conns(&dp, id).unwrap();
        assert_eq!((c.active, c.inactive), (0, 0), "dest {id}");
    }
}

#[test]
fn a_template_outlives_its_last_flow_by_its_timeout() {
    let p = Persistence {
        timeout: 300,
        netmask: lb_userspace::model::ClientMask::Netmask(Ipv4Addr::new(255, 255, 255, 0)),
    };
    let mut dp = dataplane_from("rr", 0, Some(p), &[1, 1], true);
    send(&dp, 9, SYN);
    send(&dp, 9, ACK);
    let templates = |dp: &DataPlane| dp.templates().unwrap().len();
    assert_eq!(templates(&dp), 1);
    // The flow (900 s) holds the template past its own 300 s.
    expire_after(&mut dp, 800);
    assert_eq!((dp.flows().unwrap().len(), templates(&dp)), (1, 1));
    // The flow expires; the template lasts 300 s from the last sweep that saw the flow.
    expire_after(&mut dp, 101);
    assert_eq!((dp.flows().unwrap().len(), templates(&dp)), (0, 1));
    expire_after(&mut dp, 198);
    assert_eq!(templates(&dp), 1);
    expire_after(&mut dp, 2);
    assert_eq!(templates(&dp), 0);
    // The client's next flow is scheduled afresh and makes a new template.
    send(&dp, 10, SYN);
    assert_eq!(templates(&dp), 1);
}
