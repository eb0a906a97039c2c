//! The benchmark's generator and sink programs in the kernel (BPF_PROG_TEST_RUN): the n-th
//! frame carries flow n modulo the flow count, addressed to the director, with a valid IPv4
//! checksum; the sink counts and drops only what the director sent.

use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use lb_common::{
    generator::{Counter, Generator, flow_source, ipv4_checksum},
    state::tcp_flags::ACK,
    tools::{map_names, program_names},
};
use xdpvs_testbed::{
    packets::{Frame, IP_OFFSET, L4},
    tools,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const DIRECTOR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

/// The object with the generator and the sink loaded, set to cycle through `flows` flows.
fn tools(flows: u32) -> Ebpf {
    let mut ebpf = tools::load(&[program_names::GENERATOR, program_names::SINK])
        .expect("the object and both programs load");
    let mut cfg: Array<_, Generator> =
        Array::try_from(ebpf.map_mut(map_names::GENERATOR).unwrap()).unwrap();
    let generator = Generator {
        dst_mac: DIRECTOR_MAC,
        src_mac: CLIENT_MAC,
        flows,
    };
    cfg.set(0, generator, 0).unwrap();
    ebpf
}

fn run(ebpf: &Ebpf, program: &str, frame: &[u8]) -> (u32, Vec<u8>) {
    let p: &Xdp = ebpf.program(program).unwrap().try_into().unwrap();
    let mut out = vec![0u8; frame.len() + 64];
    let r = p
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .unwrap();
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

fn template(src_mac: [u8; 6]) -> Vec<u8> {
    Frame {
        dst_mac: [9; 6],
        src_mac,
        vlan: None,
        src: Ipv4Addr::new(1, 2, 3, 4),
        dst: Ipv4Addr::new(10, 77, 0, 100),
        l4: L4::Tcp {
            sport: 7,
            dport: 80,
            flags: ACK,
        },
    }
    .build(&[0u8; 18])
}

/// Keeps the calling thread on CPU 0: the generator's sequence number is per CPU.
fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one CPU set, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

#[test]
fn generator_cycles_through_its_flows_with_valid_headers() {
    pin_to_cpu0();
    let ebpf = tools(3);
    let input = template([8; 6]);
    for n in 0..7u32 {
        let (verdict, out) = run(&ebpf, program_names::GENERATOR, &input);
        assert_eq!(verdict, XDP_TX);
        assert_eq!(out.len(), input.len());
        assert_eq!(out[..6], DIRECTOR_MAC);
        assert_eq!(out[6..12], CLIENT_MAC);
        let ip: [u8; 20] = out[IP_OFFSET..IP_OFFSET + 20].try_into().unwrap();
        let (addr, port) = flow_source(n % 3);
        assert_eq!(ip[12..16], addr.to_be_bytes(), "frame {n}");
        assert_eq!(out[IP_OFFSET + 20..IP_OFFSET + 22], port.to_be_bytes());
        assert_eq!(ipv4_checksum(&ip, false), 0, "frame {n}: checksum");
        // Everything else is the template's.
        assert_eq!(ip[..10], input[IP_OFFSET..IP_OFFSET + 10]);
        assert_eq!(ip[16..], input[IP_OFFSET + 16..IP_OFFSET + 20]);
        assert_eq!(out[IP_OFFSET + 22..], input[IP_OFFSET + 22..]);
    }
}

#[test]
fn sink_counts_and_drops_only_the_directors_frames() {
    let ebpf = tools(1);
    assert_eq!(
        run(&ebpf, program_names::SINK, &template(DIRECTOR_MAC)).0,
        XDP_DROP
    );
    assert_eq!(
        run(&ebpf, program_names::SINK, &template(DIRECTOR_MAC)).0,
        XDP_DROP
    );
    assert_eq!(
        run(&ebpf, program_names::SINK, &template(CLIENT_MAC)).0,
        XDP_PASS
    );
    let counters: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map(map_names::GENERATOR_COUNTERS).unwrap()).unwrap();
    let received: u64 = counters
        .get(&(Counter::Received as u32), 0)
        .unwrap()
        .iter()
        .sum();
    assert_eq!(received, 2);
}
