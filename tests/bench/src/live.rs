//! Live forwarding rate on a veth pair: a generator namespace sends frames with
//! BPF_PROG_TEST_RUN in live-frame mode (XDP_TX out of its veth), the director's veth runs the
//! program under test (xdpvs, or the MAC-swap baseline) and sends them back, and a sink program
//! on the generator's veth counts what arrives. The rate is what the sink counted over the
//! wall time of the generator's call, so lost frames do not count.
//!
//! Generator, director and sink run in softirq on the generator's core: the figures are the
//! rate of that pipeline on one core, the baseline shows its ceiling, and the program run time
//! from BPF statistics gives the director's own share.

use std::{
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, XdpMode},
    sys::{Stats, enable_stats},
};
use lb_common::{
    DEFAULT_MAX_FLOWS,
    generator::{Counter, Generator},
    sched::Scheduler,
    state::tcp_flags::ACK,
    tools::{map_names, program_names},
};

use crate::{
    CLIENT, CLIENT_MAC, DIRECTOR_MAC, Extra, Figure, Measured, Plan, VIP, dataplane, frame_from,
    program_info,
};
use lb_userspace::maps::live_conns;
use xdpvs_testbed::{
    netns::{Netns, enter_current_thread, unique_name},
    tools,
    topology::IFACE,
};

/// Frames per live-frame batch (the kernel's default).
const BATCH: u32 = 64;

/// A generator namespace and a director namespace joined by a veth pair, with the
/// generator, sink and baseline programs loaded.
struct Bed {
    generator: Netns,
    director: Netns,
    tools: Ebpf,
    ifindex: u32,
    template: Vec<u8>,
}

impl Bed {
    fn build() -> Result<Self> {
        let generator = Netns::create(unique_name("bench-gen"))?;
        let director = Netns::create(unique_name("bench-dir"))?;
        generator.add_veth(IFACE, IFACE, &director)?;
        for (ns, mac) in [(&generator, CLIENT_MAC), (&director, DIRECTOR_MAC)] {
            let mac = mac.map(|b| format!("{b:02x}")).join(":");
            ns.ip(&["link", "set", IFACE, "address", &mac, "up"])?;
        }
        let mut tools = tools::load(&[
            program_names::GENERATOR,
            program_names::SINK,
            program_names::MAC_SWAP,
        ])?;
        enter_current_thread(&generator.path())?;
        tools::program(&mut tools, program_names::SINK)?
            .attach(IFACE, XdpMode::Driver)
            .context("attaching the sink")?;
        let ifindex = lb_userspace::iface::index(IFACE)?;
        let template = frame_from(CLIENT, 1024, ACK, VIP);
        Ok(Self {
            generator,
            director,
            tools,
            ifindex,
            template,
        })
    }

    fn set_flows(&mut self, flows: u32) -> Result<()> {
        let mut cfg: Array<_, Generator> =
            Array::try_from(self.tools.map_mut(map_names::GENERATOR).context("map")?)?;
        cfg.set(
            0,
            Generator {
                dst_mac: DIRECTOR_MAC,
                src_mac: CLIENT_MAC,
                flows,
            },
            0,
        )?;
        Ok(())
    }

    /// Both counters summed over the CPUs, then zeroed: (sent, received).
    fn take_counts(&mut self) -> Result<(u64, u64)> {
        let mut counters: PerCpuArray<_, u64> = PerCpuArray::try_from(
            self.tools
                .map_mut(map_names::GENERATOR_COUNTERS)
                .context("map")?,
        )?;
        let mut take = |c: Counter| -> Result<u64> {
            let values = counters.get(&(c as u32), 0)?;
            let sum = values.iter().sum();
            let zeros = values.iter().map(|_| 0u64).collect::<Vec<_>>();
            counters.set(c as u32, aya::maps::PerCpuValues::try_from(zeros)?, 0)?;
            Ok(sum)
        };
        Ok((take(Counter::Sent)?, take(Counter::Received)?))
    }

    /// Sends `frames` live frames: (wall time, share of CPUs busy).
    fn send(&mut self, frames: u32) -> Result<(Duration, f64)> {
        enter_current_thread(&self.generator.path())?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let ctx: Vec<u8> = [0, self.template.len() as u32, 0, self.ifindex, 0, 0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let opts = TestRunOptions {
            data_in: Some(&self.template),
            ctx_in: Some(&ctx),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
            ..TestRunOptions::default()
        };
        let before = cpu_times()?;
        let start = Instant::now();
        tools::program(&mut self.tools, program_names::GENERATOR)?
            .test_run(opts)
            .context("BPF_PROG_TEST_RUN with live frames")?;
        let elapsed = start.elapsed();
        let after = cpu_times()?;
        // Let the last batch drain through the director.
        std::thread::sleep(Duration::from_millis(20));
        let (busy, total) = (after.0 - before.0, after.1 - before.1);
        Ok((elapsed, busy as f64 / total.max(1) as f64))
    }

    /// Runs `plan.runs` measurements of `plan.live_frames` frames each with the director's
    /// program `director` (its id, for the run-time statistics).
    fn measure(&mut self, plan: &Plan, name: String, director: u32) -> Result<Measured> {
        self.take_counts()?;
        let _stats = enable_stats(Stats::RunTime).context("BPF run-time statistics")?;
        let program_before = run_stats(director)?;
        let (mut rates, mut busy) = (Vec::new(), Vec::new());
        let (mut sent, mut received) = (0, 0);
        for _ in 0..plan.runs {
            let (elapsed, cpu) = self.send(plan.live_frames)?;
            let (s, r) = self.take_counts()?;
            rates.push(r as f64 / elapsed.as_secs_f64() / 1e6);
            busy.push(cpu);
            sent += s;
            received += r;
        }
        let program_after = run_stats(director)?;
        let director_ns = (program_after.0 - program_before.0) as f64
            / (program_after.1 - program_before.1).max(1) as f64;
        ensure!(received > 0, "{name}: the sink received nothing");
        let delivered = received as f64 / sent.max(1) as f64;
        let rate = Figure::of(name, rates.clone(), 0);
        let median_run = rates
            .iter()
            .position(|&r| r == rate.median)
            .unwrap_or_default();
        Ok(Measured {
            figure: rate,
            extras: vec![
                Extra {
                    header: "CPU busy",
                    key: "cpu_busy",
                    value: busy[median_run],
                    text: format!("{:.0}%", busy[median_run] * 100.0),
                },
                Extra {
                    header: "program ns",
                    key: "director_program_ns_per_packet",
                    value: director_ns,
                    text: format!("{director_ns:.1}"),
                },
                Extra {
                    header: "delivered",
                    key: "delivered",
                    value: delivered,
                    text: format!("{:.1}%", delivered * 100.0),
                },
            ],
        })
    }
}

/// Busy and total jiffies over all CPUs, from /proc/stat.
pub(super) fn cpu_times() -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("/proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

/// (run time ns, run count) of program `id`.
fn run_stats(id: u32) -> Result<(u64, u64)> {
    let info = program_info(id)?;
    Ok((info.run_time().as_nanos() as u64, info.run_count()))
}

/// The live rate: the MAC-swap baseline first, then xdpvs with each of `plan.flow_counts`
/// distinct established flows cycled through.
///
/// The calling thread moves between the test bed's namespaces and is back in its own when
/// this returns.
pub fn live_rate(plan: &Plan, progress: &mut dyn FnMut(&Measured)) -> Result<Vec<Measured>> {
    let home = std::fs::File::open("/proc/thread-self/ns/net")?;
    let result = measure_live(plan, progress);
    enter_current_thread(&format!("/proc/self/fd/{}", home.as_raw_fd()))?;
    result
}

fn measure_live(plan: &Plan, progress: &mut dyn FnMut(&Measured)) -> Result<Vec<Measured>> {
    let mut bed = Bed::build()?;
    let mut figures = Vec::new();
    bed.set_flows(1)?;
    enter_current_thread(&bed.director.path())?;
    let swap = tools::program(&mut bed.tools, program_names::MAC_SWAP)?;
    let id = swap.info()?.id();
    let link = swap.attach(IFACE, XdpMode::Driver)?;
    let f = bed.measure(plan, "baseline: MAC swap + XDP_TX".into(), id)?;
    progress(&f);
    figures.push(f);
    tools::program(&mut bed.tools, program_names::MAC_SWAP)?.detach(link)?;

    let mut dp = dataplane(Scheduler::Rr, 2, DEFAULT_MAX_FLOWS)?;
    enter_current_thread(&bed.director.path())?;
    dp.attach(IFACE, false)?;
    let id = dp
        .program(lb_common::program_names::LOAD_BALANCER)
        .info()?
        .id();
    for &n in plan.flow_counts {
        bed.set_flows(n)?;
        // Passes over the flows until all are in the table: each new one is picked up
        // mid-stream (ACK) and scheduled; frames lost on the way are sent again.
        let mut conns = 0;
        for _ in 0..5 {
            bed.take_counts()?;
            bed.send(n)?;
            conns = (0..2)
                .map(|d| live_conns(&dp, d).map(|c| u64::from(c.active) + u64::from(c.inactive)))
                .sum::<Result<u64>>()?;
            if conns >= u64::from(n) {
                break;
            }
        }
        ensure!(
            conns >= u64::from(n),
            "only {conns} of {n} flows in the table"
        );
        let f = bed.measure(plan, format!("xdpvs, {n} established flows"), id)?;
        progress(&f);
        figures.push(f);
    }
    Ok(figures)
}
