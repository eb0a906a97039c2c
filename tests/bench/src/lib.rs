//! The xdpvs benchmark (`cargo xtask bench`): per-packet costs in the kernel with
//! BPF_PROG_TEST_RUN, each reported as a ratio to the MAC-swap baseline measured in the same
//! run. Median of several runs, with min and max. Then the live forwarding rate ([`live`])
//! and HTTP through the VIP against L4 proxies ([`http`]), and the same HTTP run against the
//! kernel's IPVS measured inside the reference VM ([`run_reference_vm`]) joined to the report.
//!
//! New-flow cost is measured with a connection table of one entry that another flow already
//! holds: every repetition then schedules anew (the walk, the counters, the table lookups) and
//! fails to insert, which is the cost of a new flow minus one successful hash insert.
//!
//! Flow-table scaling fills the table through the program itself (one SYN per flow) and times
//! an established packet; the control plane is timed against writing the same number of real
//! server entries directly (its floor), inside a private network namespace so that the
//! daemon's neighbour probes go nowhere.

use std::{net::Ipv4Addr, path::Path, time::Duration};

use anyhow::{Context, Result};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use lb_common::dest::Dest;
use lb_common::{
    program_names,
    sched::Scheduler,
    state::tcp_flags::{ACK, SYN},
};
use lb_userspace::{
    cli::Format,
    daemon::{Daemon, Options},
    dataplane::DataPlane,
    ipvsadm_format,
    maps::Maps,
    model::{DestSpec, Protocol, ServiceAddr, ServiceSpec},
};

mod expiry;
mod http;
mod live;
mod plot;
mod report;

pub use plot::Curve;
pub use report::{Extra, Measured, ReferenceVm, Results, json, table};

use plot::Axes;

use xdpvs_testbed::{
    direct,
    netns::{Netns, enter_current_thread, unique_name},
    packets::{Frame, L4},
    tools,
};

const DIRECTOR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
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
    /// Flows in the table for the scaling figures.
    pub flow_counts: &'static [u32],
    /// Services and real servers per service for the control-plane figures.
    pub control_plane: (u32, u32),
    /// Live flows in the table for the expiry figures.
    pub expiry_flows: &'static [u32],
    /// Frames per live-rate run.
    pub live_frames: u32,
    /// Length of one HTTP load run.
    pub http_time: Duration,
}

impl Plan {
    /// A quick smoke run (CI).
    pub const QUICK: Plan = Plan {
        runs: 3,
        run_time: Duration::from_millis(20),
        server_counts: &[2, 64, 1000],
        flow_counts: &[1, 10_000],
        control_plane: (100, 100),
        expiry_flows: &[1_000, 10_000],
        live_frames: 200_000,
        http_time: Duration::from_secs(1),
    };
    /// The README's figures.
    pub const FULL: Plan = Plan {
        runs: 7,
        run_time: Duration::from_millis(200),
        server_counts: &[2, 64, 1000],
        flow_counts: &[1, 10_000, 1_000_000],
        control_plane: (1000, 100),
        expiry_flows: &[1_000, 100_000, 1_000_000],
        live_frames: 4_000_000,
        http_time: Duration::from_secs(5),
    };
}

/// One measured figure: nanoseconds per packet over the runs.
#[derive(Clone, Debug)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Median ns/packet.
    pub median: f64,
    /// Fastest run.
    pub min: f64,
    /// Slowest run.
    pub max: f64,
    /// XDP verdict of the measured packet.
    pub verdict: u32,
}

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);

impl Figure {
    /// The median, min and max of `samples` (at least one).
    fn of(name: String, mut samples: Vec<f64>, verdict: u32) -> Self {
        samples.sort_by(f64::total_cmp);
        Self {
            name,
            median: samples[samples.len() / 2],
            min: samples[0],
            max: samples[samples.len() - 1],
            verdict,
        }
    }
}

fn frame(src_port: u16, flags: u8, dst: Ipv4Addr) -> Vec<u8> {
    frame_from(CLIENT, src_port, flags, dst)
}

fn frame_from(src: Ipv4Addr, src_port: u16, flags: u8, dst: Ipv4Addr) -> Vec<u8> {
    Frame {
        dst_mac: DIRECTOR_MAC,
        src_mac: CLIENT_MAC,
        vlan: None,
        src,
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
fn time(program: &Xdp, data: &[u8], repeat: u32) -> Result<(f64, u32)> {
    let mut out = vec![0u8; data.len() + 64];
    let opts = TestRunOptions {
        data_in: Some(data),
        data_out: Some(&mut out),
        repeat,
        ..TestRunOptions::default()
    };
    let r = program.test_run(opts).context("BPF_PROG_TEST_RUN")?;
    Ok((r.duration.as_nanos() as f64, r.return_value))
}

/// Measures `program` on `data` over `plan.runs` runs of about `plan.run_time` each.
fn measure(program: &Xdp, plan: &Plan, name: String, data: &[u8]) -> Result<Figure> {
    let (probe, _) = time(program, data, 100)?;
    let repeat = ((plan.run_time.as_nanos() as f64 / probe.max(1.0)) as u32).clamp(10, 5_000_000);
    let mut samples = Vec::with_capacity(plan.runs);
    let mut verdict = 0;
    for _ in 0..plan.runs {
        let (ns, v) = time(program, data, repeat)?;
        samples.push(ns);
        verdict = v;
    }
    Ok(Figure::of(name, samples, verdict))
}

/// The data plane's load balancer program.
fn balancer(dp: &DataPlane) -> &Xdp {
    dp.program(program_names::LOAD_BALANCER)
}

/// One TCP service on VIP:80 over `n` real servers.
fn spec(scheduler: Scheduler, n: u32) -> ServiceSpec {
    ServiceSpec {
        addr: ServiceAddr {
            protocol: Protocol::Tcp,
            addr: std::net::IpAddr::V4(VIP),
            port: 80,
        },
        scheduler,
        flags: 0,
        persistence: None,
        dests: (0..n)
            .map(|i| DestSpec {
                addr: std::net::IpAddr::V4(Ipv4Addr::from(0x0a4d_1000 + i)),
                weight: 1 + i % 3,
                u_threshold: 0,
                l_threshold: 0,
            })
            .collect(),
    }
}

/// A private data plane with [`spec`]'s service over `n` resolved real servers.
fn dataplane(scheduler: Scheduler, n: u32, max_flows: u32) -> Result<DataPlane> {
    let mut dp = DataPlane::load(None, max_flows, lb_common::DEFAULT_MAX_TEMPLATES)?;
    dp.set_director(DIRECTOR_MAC, false)?;
    direct::install(dp, &[spec(scheduler, n)], |i| {
        Some([2, 0, 0, 1, (i >> 8) as u8, i as u8])
    })
}

/// Every figure of the kernel per-packet benchmark, and the new-flow cost by number of real
/// servers as one curve per scheduler.
pub fn per_packet(
    plan: &Plan,
    progress: &mut dyn FnMut(&Figure),
) -> Result<(Vec<Figure>, Vec<Curve>)> {
    let mut figures = Vec::new();
    let mut curves: Vec<Curve> = Scheduler::ALL
        .iter()
        .map(|s| Curve {
            label: s.name().into(),
            points: Vec::new(),
        })
        .collect();
    let mut push = |f: Figure, figures: &mut Vec<Figure>| {
        progress(&f);
        figures.push(f);
    };
    let mac_swap = lb_common::tools::program_names::MAC_SWAP;
    let mut helpers = tools::load(&[mac_swap])?;
    let est = frame(1000, ACK, VIP);
    push(
        measure(
            tools::program(&mut helpers, mac_swap)?,
            plan,
            "baseline: MAC swap + XDP_TX".into(),
            &est,
        )?,
        &mut figures,
    );
    let dp = dataplane(Scheduler::Rr, 2, 1024)?;
    time(balancer(&dp), &frame(1000, SYN, VIP), 1)?;
    push(
        measure(balancer(&dp), plan, "established flow".into(), &est)?,
        &mut figures,
    );
    let other = frame(1000, SYN, Ipv4Addr::new(10, 77, 0, 2));
    push(
        measure(
            balancer(&dp),
            plan,
            "non-VIP packet (XDP_PASS)".into(),
            &other,
        )?,
        &mut figures,
    );
    for &n in plan.server_counts {
        for (s, curve) in Scheduler::ALL.into_iter().zip(&mut curves) {
            let dp = dataplane(s, n, 1)?;
            // Fill the one-entry table with another flow, so the measured SYN is always new.
            time(balancer(&dp), &frame(1, SYN, VIP), 1)?;
            let name = format!("new flow, {} with {n} servers", s.name());
            let f = measure(balancer(&dp), plan, name, &frame(2, SYN, VIP))?;
            curve.points.push((f64::from(n), f.median));
            push(f, &mut figures);
        }
    }
    Ok((figures, curves))
}

/// The `i`-th distinct client flow, as the live-frame generator sends it.
fn client_flow(i: u32) -> (Ipv4Addr, u16) {
    let (addr, port) = lb_common::generator::flow_source(i);
    (Ipv4Addr::from(addr), port)
}

/// The kernel's information on loaded program `id` (run-time statistics included).
fn program_info(id: u32) -> Result<aya::programs::ProgramInfo> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .with_context(|| format!("program {id} not loaded"))
}

/// Established-flow cost with `plan.flow_counts` flows in a 1M-entry table, and the maps'
/// memory per flow (bytes).
pub fn flow_scaling(plan: &Plan, progress: &mut dyn FnMut(&Figure)) -> Result<(Vec<Figure>, f64)> {
    let max_flows = lb_common::DEFAULT_MAX_FLOWS;
    let dp = dataplane(Scheduler::Rr, 2, max_flows)?;
    let mut figures = Vec::new();
    let mut filled = 0;
    for &n in plan.flow_counts {
        for i in filled..n {
            let (src, port) = client_flow(i);
            time(balancer(&dp), &frame_from(src, port, SYN, VIP), 1)?;
        }
        filled = n;
        let (src, port) = client_flow(n - 1);
        let f = measure(
            balancer(&dp),
            plan,
            format!("established flow, {n} flows in table"),
            &frame_from(src, port, ACK, VIP),
        )?;
        progress(&f);
        figures.push(f);
    }
    let bytes = dp.flow_memory()?;
    Ok((figures, bytes as f64 / f64::from(max_flows)))
}

/// One control-plane timing in milliseconds (median, min, max over the runs) of `f`, given
/// what an untimed `setup` made for its run.
fn timed<S>(
    name: String,
    runs: usize,
    mut setup: impl FnMut() -> Result<S>,
    mut f: impl FnMut(S) -> Result<()>,
) -> Result<Figure> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let prepared = setup()?;
        let start = std::time::Instant::now();
        f(prepared)?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Figure::of(name, samples, 0))
}

/// `services` TCP services of `servers` real servers each.
fn many_services(services: u32, servers: u32) -> Vec<ServiceSpec> {
    (0..services)
        .map(|s| ServiceSpec {
            addr: ServiceAddr {
                protocol: Protocol::Tcp,
                addr: std::net::IpAddr::V4(VIP),
                port: 1000 + s as u16,
            },
            scheduler: Scheduler::Wlc,
            flags: 0,
            persistence: None,
            dests: (0..servers)
                .map(|d| DestSpec {
                    addr: std::net::IpAddr::V4(Ipv4Addr::from(0x0a50_0000 + s * servers + d)),
                    weight: 1,
                    u_threshold: 0,
                    l_threshold: 0,
                })
                .collect(),
        })
        .collect()
}

/// Control-plane timings in ms: writing every real server entry straight into the map (the
/// floor, first), the daemon applying the whole table, and `xdpvsadm -Ln`'s listing of it.
/// Call inside a private network namespace.
pub fn control_plane(plan: &Plan, progress: &mut dyn FnMut(&Figure)) -> Result<Vec<Figure>> {
    let (services, servers) = plan.control_plane;
    let specs = many_services(services, servers);
    let runs = plan.runs.min(3);
    let mut figures = Vec::new();
    let mut push = |f: Figure| {
        progress(&f);
        figures.push(f);
    };
    let mut dp = DataPlane::load(None, 1024, lb_common::DEFAULT_MAX_TEMPLATES)?;
    push(timed(
        format!("baseline: {} real server map writes", services * servers),
        runs,
        || Ok(()),
        |()| {
            for id in 0..services * servers {
                dp.write_dest(id, &Dest::default())?;
            }
            Ok(())
        },
    )?);
    let mut opts = Options::new(Some("lo".into()), None)?;
    opts.services = specs;
    let mut daemon = None;
    push(timed(
        format!("apply {services} services x {servers} real servers"),
        runs,
        // A freshly loaded data plane each time; loading (the verifier) is not applying.
        || DataPlane::load(None, 1024, lb_common::DEFAULT_MAX_TEMPLATES),
        |dp| {
            let mut d = Daemon::new(dp, &opts);
            d.install(&opts, None)?;
            daemon = Some(d);
            Ok(())
        },
    )?);
    let daemon = daemon.context("applied")?;
    let mut lines = 0;
    push(timed(
        format!("xdpvsadm -Ln of {services} x {servers}"),
        runs,
        || Ok(()),
        |()| {
            let l = daemon.listing()?;
            lines = ipvsadm_format::list(&l, None, &Format::default())
                .lines()
                .count();
            Ok(())
        },
    )?);
    anyhow::ensure!(
        lines as u32 == 3 + services * (1 + servers),
        "listing has {lines} lines"
    );
    Ok(figures)
}

/// A flat line at `y` over `xs`: a baseline drawn next to a curve.
fn flat(label: &str, xs: &[u32], y: f64) -> Curve {
    Curve {
        label: label.into(),
        points: xs.iter().map(|&x| (f64::from(x), y)).collect(),
    }
}

/// `(x, figure's median)` points of `figures` over `xs`.
fn curve(label: &str, xs: &[u32], figures: &[Measured]) -> Curve {
    Curve {
        label: label.into(),
        points: xs
            .iter()
            .zip(figures)
            .map(|(&x, m)| (f64::from(x), m.figure.median))
            .collect(),
    }
}

/// Writes the scaling curves and the HTTP comparison as PNG files into `out_dir`.
fn plots(plan: &Plan, r: &Results, mut new_flow: Vec<Curve>, out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let baseline = "MAC swap baseline";
    let swap_ns = r.per_packet[0].figure.median;
    new_flow.push(flat(baseline, plan.server_counts, swap_ns));
    let charts = [
        (
            "new_flow.png",
            Axes {
                title: "New-flow cost by number of real servers (BPF_PROG_TEST_RUN)",
                x: "real servers",
                y: "ns per packet",
                log_y: true,
            },
            new_flow,
        ),
        (
            "flow_table.png",
            Axes {
                title: "Established-flow cost by connection-table fill",
                x: "flows in the table",
                y: "ns per packet",
                log_y: false,
            },
            vec![
                curve(
                    "xdpvs, established flow",
                    plan.flow_counts,
                    &r.flow_scaling[1..],
                ),
                flat(baseline, plan.flow_counts, swap_ns),
            ],
        ),
        (
            "live_rate.png",
            Axes {
                title: "Live forwarding rate on a veth pair (XDP live frames, one core)",
                x: "distinct established flows",
                y: "Mpps",
                log_y: false,
            },
            vec![
                curve("xdpvs", plan.flow_counts, &r.live[1..]),
                flat(baseline, plan.flow_counts, r.live[0].figure.median),
            ],
        ),
    ];
    for (file, axes, curves) in &charts {
        plot::lines(&out_dir.join(file), axes, curves)?;
    }
    let bars = |group: &[Measured]| -> Vec<(String, f64)> {
        group
            .iter()
            .map(|m| (m.figure.name.clone(), m.figure.median))
            .collect()
    };
    plot::bars(
        &out_dir.join("http.png"),
        "HTTP requests/s through the VIP (wrk -t2 -c64, 2 real servers)",
        "requests/s",
        &[
            ("keep-alive", bars(&r.http_keep_alive)),
            ("new connection per request", bars(&r.http_new_connections)),
        ],
    )
}

/// The HTTP run of the kernel's IPVS against xdpvs, as run inside the reference VM: prints its
/// tables and saves them with their figures into `out_dir` for [`run`] to join.
pub fn run_reference_vm(plan: &Plan, out_dir: &Path) -> Result<()> {
    let (keep_alive, new_connections) =
        http::http_rate(plan, &http::Balancer::REFERENCE_VM, &mut |m| {
            eprintln!("  {:<44} {:>10.1}", m.figure.name, m.figure.median);
        })?;
    let vm = ReferenceVm::new(&keep_alive, &new_connections);
    print!("{}", vm.text);
    vm.save(out_dir)
}

/// Only the connection-table expiry figures, printed (`xdpvs-bench --only-expiry`).
pub fn run_expiry(plan: &Plan) -> Result<()> {
    let mut progress = |f: &Figure| eprintln!("  {:<44} {:>10.1}", f.name, f.median);
    let rows = expiry::expiry(plan, &mut progress)?;
    print!(
        "{}",
        table("connection table expiry (CPU, once a second)", "ms", &rows)
    );
    Ok(())
}

/// Only the control-plane figures, printed (`xdpvs-bench --only-control-plane`), in a private
/// namespace as in [`run`].
pub fn run_control_plane(plan: &Plan) -> Result<()> {
    let ns = Netns::create(unique_name("bench"))?;
    enter_current_thread(&ns.path())?;
    let mut progress = |f: &Figure| eprintln!("  {:<44} {:>10.1}", f.name, f.median);
    let rows: Vec<Measured> = control_plane(plan, &mut progress)?
        .into_iter()
        .map(Measured::from)
        .collect();
    print!("{}", table("control plane", "ms", &rows));
    Ok(())
}

/// Runs the benchmark, prints the tables and writes `out_dir/bench.json`, with the reference
/// VM's report that [`run_reference_vm`] saved into `reference_vm`, if given.
pub fn run(plan: &Plan, out_dir: &Path, reference_vm: Option<&Path>) -> Result<()> {
    let reference_vm = reference_vm.map(ReferenceVm::load).transpose()?;
    // A private namespace: the daemon's neighbour probes of the control-plane figures go
    // nowhere.
    let ns = Netns::create(unique_name("bench"))?;
    enter_current_thread(&ns.path())?;
    println!(
        "measuring (BPF_PROG_TEST_RUN, {} runs per figure)...",
        plan.runs
    );
    let mut progress = |f: &Figure| eprintln!("  {:<44} {:>10.1}", f.name, f.median);
    let (per_packet, new_flow) = per_packet(plan, &mut progress)?;
    let (mut flow_scaling, bytes_per_flow) = flow_scaling(plan, &mut progress)?;
    flow_scaling.insert(0, per_packet[0].clone());
    let control_plane = control_plane(plan, &mut progress)?;
    let expiry = expiry::expiry(plan, &mut progress)?;
    let live = live::live_rate(plan, &mut |f| progress(&f.figure))?;
    let (http_keep_alive, http_new_connections) =
        http::http_rate(plan, &http::Balancer::HOST, &mut |f| progress(&f.figure))?;
    let results = Results {
        per_packet: per_packet.into_iter().map(Measured::from).collect(),
        flow_scaling: flow_scaling.into_iter().map(Measured::from).collect(),
        bytes_per_flow,
        control_plane: control_plane.into_iter().map(Measured::from).collect(),
        expiry,
        live,
        http_keep_alive,
        http_new_connections,
        reference_vm,
    };
    print!("{}{}", results.tables(), results.notes());
    plots(plan, &results, new_flow, out_dir)?;
    std::fs::create_dir_all(out_dir)?;
    let path = out_dir.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json(&results))?)?;
    println!("wrote {}", path.display());
    Ok(())
}
