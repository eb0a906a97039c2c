//! Two CPUs racing on the first packets of the same flows, with BPF_PROG_TEST_RUN on the real
//! object: one thread pinned to each CPU sends the SYN of every flow at the same moment as the
//! other. Whichever CPU creates a flow's entry, both packets must go to the real server the
//! entry records, and the flow must be counted once.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicUsize, Ordering},
    thread,
};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use lb_common::{program_names, state::tcp_flags::SYN};
use lb_userspace::{
    dataplane::DataPlane,
    maps::{Maps, live_conns},
};

use lb_userspace::model::Persistence;
use xdpvs_testbed::packets::Frame;

use crate::datapath::{RS_MACS, XDP_TX, dataplane_from, dataplane_with, tcp};

/// Flows raced for.
const FLOWS: u16 = 20_000;
/// The CPUs the two senders are pinned to.
const CPUS: [usize; 2] = [0, 1];
/// Flow `i` comes from this client port plus `i`.
const FIRST_PORT: u16 = 10_000;

/// The TCP service on VIP:80 (service 0), rr over three real servers (dest ids 0, 1, 2) with
/// the MACs `RS_MACS`.
fn dataplane() -> DataPlane {
    dataplane_with("rr", 0, &[1; RS_MACS.len()], true)
}

fn syn(flow: u16) -> Vec<u8> {
    tcp(FIRST_PORT + flow, 80, SYN).build(b"")
}

/// Moves the calling thread onto `cpu` alone: BPF_PROG_TEST_RUN runs the program there.
pub(crate) fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set, and CPU_SET stays inside it for cpu < 1024.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        rc,
        0,
        "pinning to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
}

/// Waits, spinning, until every sender has arrived at step `step` (the count of arrivals
/// reaches `(step + 1) * senders`), so that both send their packet of a flow at once.
fn meet(arrivals: &AtomicUsize, step: usize) {
    arrivals.fetch_add(1, Ordering::AcqRel);
    let all = (step + 1) * CPUS.len();
    let mut spins = 0u32;
    while arrivals.load(Ordering::Acquire) < all {
        spins += 1;
        if spins.is_multiple_of(1024) {
            // The other sender is not running (2 shared cores): let it.
            thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Sends the SYN of every flow from `cpu`, in step with the other sender: the destination MAC
/// of each forwarded frame.
fn send_all(program: &Xdp, frames: &[Vec<u8>], arrivals: &AtomicUsize, cpu: usize) -> Vec<[u8; 6]> {
    pin_to(cpu);
    let mut out = vec![0u8; frames[0].len() + 256];
    frames
        .iter()
        .enumerate()
        .map(|(step, frame)| {
            meet(arrivals, step);
            let r = program
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    data_out: Some(&mut out),
                    ..TestRunOptions::default()
                })
                .expect("BPF_PROG_TEST_RUN");
            assert_eq!(r.return_value, XDP_TX, "flow {step} on CPU {cpu}");
            out[..6].try_into().unwrap()
        })
        .collect()
}

/// Sends `frames[k]` from `CPUS[k]`, the n-th frames of both at the same moment: the
/// destination MACs of the forwarded frames, per CPU.
fn race(dp: &DataPlane, frames: [Vec<Vec<u8>>; 2]) -> Vec<Vec<[u8; 6]>> {
    let arrivals = AtomicUsize::new(0);
    let program = dp.program(program_names::LOAD_BALANCER);
    thread::scope(|s| {
        let senders: Vec<_> = CPUS
            .iter()
            .zip(&frames)
            .map(|(cpu, frames)| s.spawn(|| send_all(program, frames, &arrivals, *cpu)))
            .collect();
        senders.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

#[test]
fn racing_first_packets_follow_the_flow_entry_and_count_once() {
    let dp = dataplane();
    let frames: Vec<Vec<u8>> = (0..FLOWS).map(syn).collect();
    let sent = race(&dp, [frames.clone(), frames]);

    let flows = dp.flows().unwrap();
    assert_eq!(flows.len(), usize::from(FLOWS), "one entry per flow");
    let mut misrouted = 0;
    for (key, flow) in &flows {
        let i = usize::from(u16::from_be(key.src_port) - FIRST_PORT);
        let recorded = dp.dest(flow.dest).unwrap().mac;
        misrouted += sent.iter().filter(|macs| macs[i] != recorded).count();
    }
    assert_eq!(
        misrouted, 0,
        "packets sent elsewhere than their flow's recorded real server"
    );

    let ids = 0..RS_MACS.len() as u32;
    let scheduled: u64 = ids
        .clone()
        .map(|id| dp.dest_traffic(id).unwrap().conns)
        .sum();
    let inactive: u32 = ids.map(|id| live_conns(&dp, id).unwrap().inactive).sum();
    assert_eq!(
        (scheduled, dp.service_traffic(0).unwrap().conns),
        (u64::from(FLOWS), u64::from(FLOWS)),
        "connections counted in the traffic counters"
    );
    assert_eq!(
        inactive,
        u32::from(FLOWS),
        "connections counted in InActConn"
    );
}

#[test]
fn racing_first_flows_of_a_persistent_client_share_its_template() {
    let persistence = Persistence {
        timeout: 300,
        netmask: lb_userspace::model::ClientMask::Netmask(Ipv4Addr::BROADCAST),
    };
    let dp = dataplane_from("rr", 0, Some(persistence), &[1; RS_MACS.len()], true);
    // Client i opens one connection from each CPU at the same moment.
    let frames = |port: u16| -> Vec<Vec<u8>> {
        (0..u32::from(FLOWS))
            .map(|i| {
                Frame {
                    src: Ipv4Addr::from(0x0a50_0000 + i),
                    ..tcp(port, 80, SYN)
                }
                .build(b"")
            })
            .collect()
    };
    let sent = race(&dp, [frames(FIRST_PORT), frames(FIRST_PORT + 1)]);
    let split = (0..usize::from(FLOWS))
        .filter(|i| sent[0][*i] != sent[1][*i])
        .count();
    assert_eq!(
        split, 0,
        "clients whose two connections went to two servers"
    );
    assert_eq!(dp.templates().unwrap().len(), usize::from(FLOWS));
}
