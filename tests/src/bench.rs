//! `cargo xtask bench`: per-packet costs in the kernel with BPF_PROG_TEST_RUN, each reported as
//! a ratio to the MAC-swap baseline measured in the same run. Median of several runs, with
//! min and max.
//!
//! New-flow cost is measured with a connection table of one entry that another flow already
//! holds: every repetition then schedules anew (the walk, the counters, the table lookups) and
//! fails to insert, which is the cost of a new flow minus one successful hash insert.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path, time::Duration};

use anyhow::{Context, Result};
use aya::programs::{TestRun, TestRunOptions};
use lb_common::{
    program_names,
    sched::Scheduler,
    state::tcp_flags::{ACK, SYN},
};
use lb_userspace::{
    dataplane::DataPlane,
    model::{DestSpec, Protocol, ServiceAddr, ServiceSpec},
};

use crate::{
    direct,
    packets::{Frame, L4},
};

const DIRECTOR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Runs per figure (the median is reported).
    pub runs: usize,
    /// Target kernel time per run.
    pub run_time: Duration,
    /// Real server counts for the new-flow figures.
    pub server_counts: &'static [u32],
}

impl Plan {
    /// A quick smoke run (CI).
    pub const QUICK: Plan = Plan {
        runs: 3,
        run_time: Duration::from_millis(20),
        server_counts: &[2, 64, 1000],
    };
    /// The README's figures.
    pub const FULL: Plan = Plan {
        runs: 7,
        run_time: Duration::from_millis(200),
        server_counts: &[2, 64, 1000],
    };
}

/// One measured figure: nanoseconds per packet over the runs.
#[derive(Clone, Debug)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Median ns/packet.
    pub median_ns: f64,
    /// Fastest run.
    pub min_ns: f64,
    /// Slowest run.
    pub max_ns: f64,
    /// XDP verdict of the measured packet.
    pub verdict: u32,
}

fn frame(src_port: u16, flags: u8, dst: Ipv4Addr) -> Vec<u8> {
    Frame {
        dst_mac: DIRECTOR_MAC,
        src_mac: [2, 0, 0, 0, 0, 0x10],
        vlan: None,
        src: Ipv4Addr::new(10, 77, 0, 10),
        dst,
        l4: L4::Tcp {
            sport: src_port,
            dport: 80,
            flags,
        },
    }
    .build(&[0u8; 18])
}

/// Runs `program` on `data` `repeat` times: (kernel-reported ns per run, verdict).
fn time(dp: &DataPlane, program: &str, data: &[u8], repeat: u32) -> Result<(f64, u32)> {
    let mut out = vec![0u8; data.len() + 64];
    let opts = TestRunOptions {
        data_in: Some(data),
        data_out: Some(&mut out),
        repeat,
        ..TestRunOptions::default()
    };
    let r = dp
        .program(program)
        .test_run(opts)
        .context("BPF_PROG_TEST_RUN")?;
    Ok((r.duration.as_nanos() as f64, r.return_value))
}

/// Measures `program` on `data` over `plan.runs` runs of about `plan.run_time` each.
fn measure(
    dp: &DataPlane,
    plan: &Plan,
    name: String,
    program: &str,
    data: &[u8],
) -> Result<Figure> {
    let (probe, _) = time(dp, program, data, 100)?;
    let repeat = ((plan.run_time.as_nanos() as f64 / probe.max(1.0)) as u32).clamp(10, 5_000_000);
    let mut samples = Vec::with_capacity(plan.runs);
    let mut verdict = 0;
    for _ in 0..plan.runs {
        let (ns, v) = time(dp, program, data, repeat)?;
        samples.push(ns);
        verdict = v;
    }
    samples.sort_by(f64::total_cmp);
    Ok(Figure {
        name,
        median_ns: samples[samples.len() / 2],
        min_ns: samples[0],
        max_ns: samples[samples.len() - 1],
        verdict,
    })
}

/// A private data plane with one TCP service on VIP:80 over `n` resolved real servers.
fn dataplane(scheduler: Scheduler, n: u32, max_flows: u32) -> Result<DataPlane> {
    let mut dp = DataPlane::load(None, max_flows)?;
    dp.set_director(DIRECTOR_MAC, false)?;
    let spec = ServiceSpec {
        addr: ServiceAddr {
            protocol: Protocol::Tcp,
            addr: VIP,
            port: 80,
        },
        scheduler: scheduler.name().into(),
        flags: 0,
        persistence: None,
        dests: (0..n)
            .map(|i| DestSpec {
                addr: Ipv4Addr::from(0x0a4d_1000 + i),
                weight: 1 + i % 3,
                u_threshold: 0,
                l_threshold: 0,
            })
            .collect(),
    };
    direct::install(&mut dp, &[spec], |i| {
        Some([2, 0, 0, 1, (i >> 8) as u8, i as u8])
    })?;
    Ok(dp)
}

/// Every figure of the kernel per-packet benchmark.
pub fn per_packet(plan: &Plan, progress: &mut dyn FnMut(&Figure)) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut push = |f: Figure, figures: &mut Vec<Figure>| {
        progress(&f);
        figures.push(f);
    };
    let dp = dataplane(Scheduler::Rr, 2, 1024)?;
    let est = frame(1000, ACK, VIP);
    push(
        measure(
            &dp,
            plan,
            "baseline: MAC swap + XDP_TX".into(),
            program_names::MAC_SWAP,
            &est,
        )?,
        &mut figures,
    );
    time(&dp, program_names::LOAD_BALANCER, &frame(1000, SYN, VIP), 1)?;
    push(
        measure(
            &dp,
            plan,
            "established flow".into(),
            program_names::LOAD_BALANCER,
            &est,
        )?,
        &mut figures,
    );
    let other = frame(1000, SYN, Ipv4Addr::new(10, 77, 0, 2));
    push(
        measure(
            &dp,
            plan,
            "non-VIP packet (XDP_PASS)".into(),
            program_names::LOAD_BALANCER,
            &other,
        )?,
        &mut figures,
    );
    for &n in plan.server_counts {
        for s in Scheduler::ALL {
            let dp = dataplane(s, n, 1)?;
            // Fill the one-entry table with another flow, so the measured SYN is always new.
            time(&dp, program_names::LOAD_BALANCER, &frame(1, SYN, VIP), 1)?;
            let name = format!("new flow, {} with {n} servers", s.name());
            push(
                measure(
                    &dp,
                    plan,
                    name,
                    program_names::LOAD_BALANCER,
                    &frame(2, SYN, VIP),
                )?,
                &mut figures,
            );
        }
    }
    Ok(figures)
}

/// The figures as a table, with ratios to the first (the baseline).
pub fn table(figures: &[Figure]) -> String {
    let base = figures.first().map_or(1.0, |f| f.median_ns);
    let mut out = format!(
        "{:<44} {:>10} {:>10} {:>10} {:>8}\n",
        "per packet (BPF_PROG_TEST_RUN)", "median ns", "min", "max", "ratio"
    );
    for f in figures {
        let _ = writeln!(
            out,
            "{:<44} {:>10.1} {:>10.1} {:>10.1} {:>7.2}x",
            f.name,
            f.median_ns,
            f.min_ns,
            f.max_ns,
            f.median_ns / base
        );
    }
    out
}

/// The figures and the machine facts as JSON.
pub fn json(figures: &[Figure]) -> serde_json::Value {
    let machine = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let base = figures.first().map_or(1.0, |f| f.median_ns);
    let rows: Vec<_> = figures
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name, "median_ns": f.median_ns, "min_ns": f.min_ns, "max_ns": f.max_ns,
                "ratio": f.median_ns / base, "verdict": f.verdict,
            })
        })
        .collect();
    serde_json::json!({
        "machine": {
            "kernel": machine("uname", &["-r"]),
            "cpus": machine("nproc", &[]),
            "cpu": machine("sh", &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]),
        },
        "per_packet": rows,
    })
}

/// Runs the benchmark, prints the table and writes `out_dir/bench.json`.
pub fn run(plan: &Plan, out_dir: &Path) -> Result<()> {
    println!(
        "measuring (BPF_PROG_TEST_RUN, {} runs per figure)...",
        plan.runs
    );
    let figures = per_packet(plan, &mut |f| {
        eprintln!("  {:<44} {:>8.1} ns", f.name, f.median_ns)
    })?;
    print!("{}", table(&figures));
    std::fs::create_dir_all(out_dir)?;
    let path = out_dir.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json(&figures))?)?;
    println!("wrote {}", path.display());
    Ok(())
}
