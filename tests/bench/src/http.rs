//! HTTP requests per second through the VIP with what operators run when ip_vs is missing:
//! HAProxy in TCP mode and nginx stream as L4 proxies on the director, against xdpvs direct
//! routing, with the same client (wrk), the same real servers (nginx answering a few bytes)
//! and the same namespaces. Each is measured with keep-alive connections and with a new
//! connection per request.
//!
//! Director CPU per request: the proxy's processes' user + system time, or for xdpvs the
//! program's run time (BPF statistics) plus xdpvsd's own CPU time. Softirq work of the
//! director's network stack that the kernel does not charge to a process is in neither; the
//! whole machine's busy time per request is shown next to it for that reason.
//!
//! Inside the reference VM (kernel 6.1 under emulation) the same run compares xdpvs with the
//! kernel's IPVS in direct routing, configured with ipvsadm. IPVS works in softirq only, so it
//! has no director figure of its own: the machine's busy time is the one to compare.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use aya::sys::{Stats, enable_stats};

use crate::{Extra, Figure, Measured, Plan, live::cpu_times, program_info};
use xdpvs_testbed::{
    cluster::{tcp_service, wait_until},
    daemon::{Daemon, default_bin_dir},
    netns::{Netns, terminate, unique_name},
    topology::{IFACE, Topology, VIP, real_server_ip},
};

/// A load balancer on the director.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balancer {
    Haproxy,
    NginxStream,
    /// The kernel's IPVS, direct routing (needs `ip_vs`: the reference VM).
    Ipvs,
    Xdpvs,
}

impl Balancer {
    /// What this machine compares, the baseline first.
    pub const HOST: [Balancer; 3] = [Balancer::Haproxy, Balancer::NginxStream, Balancer::Xdpvs];
    /// What the reference VM compares, the baseline first.
    pub const REFERENCE_VM: [Balancer; 2] = [Balancer::Ipvs, Balancer::Xdpvs];

    fn name(self) -> &'static str {
        match self {
            Balancer::Haproxy => "haproxy 2.6 (mode tcp)",
            Balancer::NginxStream => "nginx 1.22 stream",
            Balancer::Ipvs => "kernel IPVS (DR, same VM)",
            Balancer::Xdpvs => "xdpvs (DR)",
        }
    }
}

/// A process started in a namespace, ended with SIGTERM (then SIGKILL) on drop.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(ns: &Netns, program: &str, args: &[&str], log: &Path) -> Result<Self> {
        let path = log.to_owned();
        let log = fs::File::create(log)?;
        let child = ns
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        Ok(Self { child, log: path })
    }

    /// User + system CPU time of the process and its children's current processes, in
    /// seconds.
    fn cpu_seconds(&self) -> f64 {
        let pid = self.child.id();
        let children =
            fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        std::iter::once(pid)
            .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
            .map(process_cpu_seconds)
            .sum()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// Clock ticks per second: the unit of /proc's CPU times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// utime + stime of process `pid` in seconds (0 when it is gone).
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and stime are the 12th
    // and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks as f64 / clock_ticks()
}

/// An nginx configuration with `body` as its main context, run from `dir`.
fn nginx_config(dir: &Path, preamble: &str, body: &str) -> String {
    let d = dir.display();
    format!(
        "{preamble}worker_processes auto;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 8192; }}\n{body}\n"
    )
}

/// Starts nginx answering `name\n` to every request on port 80 in `ns`.
fn web_server(ns: &Netns, dir: &Path, name: &str) -> Result<Process> {
    fs::create_dir_all(dir)?;
    let d = dir.display();
    let http = format!(
        "http {{\n  access_log off;\n  keepalive_requests 100000000;\n  default_type text/plain;\n\
         client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
         uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         server {{ listen 80 backlog=4096; location / {{ return 200 \"{name}\\n\"; }} }}\n}}"
    );
    let conf = dir.join("nginx.conf");
    fs::write(&conf, nginx_config(dir, "", &http))?;
    let p = Process::start(
        ns,
        "nginx",
        &[
            "-c",
            conf.to_str().context("path")?,
            "-p",
            dir.to_str().context("path")?,
        ],
        &dir.join("stderr.log"),
    )?;
    Ok(p)
}

/// The real servers' addresses as `ADDR:80` strings.
fn upstreams(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{}:80", real_server_ip(i)))
        .collect()
}

/// A balancer running on the director.
enum Running {
    Proxy(Process),
    /// Services in the director's IPVS table.
    Ipvs,
    Xdpvs(Daemon),
}

impl Running {
    /// Starts `balancer` on the director of `topo` with round robin over its real servers.
    fn start(balancer: Balancer, topo: &Topology, dir: &Path) -> Result<Self> {
        let n = topo.real_servers.len();
        let dir = dir.join(format!("{balancer:?}").to_lowercase());
        fs::create_dir_all(&dir)?;
        let conf = dir.join("balancer.conf");
        let conf_path = conf.to_str().context("path")?;
        Ok(match balancer {
            Balancer::Haproxy => {
                let servers: String = upstreams(n)
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("  server rs{} {a}\n", i + 1))
                    .collect();
                fs::write(
                    &conf,
                    format!(
                        "global\n  maxconn 8000\ndefaults\n  mode tcp\n  timeout connect 5s\n\
                         timeout client 60s\n  timeout server 60s\n\
                         frontend vip\n  bind {VIP}:80\n  default_backend rs\n\
                         backend rs\n  balance roundrobin\n{servers}"
                    ),
                )?;
                Running::Proxy(Process::start(
                    &topo.director,
                    "haproxy",
                    &["-db", "-f", conf_path],
                    &dir.join("stderr.log"),
                )?)
            }
            Balancer::NginxStream => {
                let servers: String = upstreams(n)
                    .iter()
                    .map(|a| format!("    server {a};\n"))
                    .collect();
                let stream = format!(
                    "stream {{\n  upstream rs {{\n{servers}  }}\n  server {{ listen {VIP}:80 backlog=4096; proxy_pass rs; }}\n}}"
                );
                fs::write(
                    &conf,
                    nginx_config(
                        &dir,
                        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n",
                        &stream,
                    ),
                )?;
                Running::Proxy(Process::start(
                    &topo.director,
                    "nginx",
                    &["-c", conf_path, "-p", dir.to_str().context("path")?],
                    &dir.join("stderr.log"),
                )?)
            }
            Balancer::Ipvs => {
                let vip = format!("{VIP}:80");
                topo.director
                    .exec("ipvsadm", &["-A", "-t", &vip, "-s", "rr"])?;
                for rs in upstreams(n) {
                    topo.director
                        .exec("ipvsadm", &["-a", "-t", &vip, "-r", &rs, "-g"])?;
                }
                Running::Ipvs
            }
            Balancer::Xdpvs => {
                let weights = vec![1; n];
                let mut d = Daemon::paths(&default_bin_dir(), &unique_name("bench"))?;
                // No per-decision events: the program runs as in production.
                d.log_filter = "info";
                d.max_flows = 1 << 18;
                d.restart(&topo.director, Some(&tcp_service("rr", &weights, "")))?;
                d.wait_resolved()?;
                Running::Xdpvs(d)
            }
        })
    }

    /// What the balancer logged.
    fn log(&self, topo: &Topology) -> String {
        match self {
            Running::Proxy(p) => fs::read_to_string(&p.log).unwrap_or_default(),
            Running::Ipvs => topo.director.exec("ipvsadm", &["-Ln"]).map_or_else(
                |e| format!("{e:#}"),
                |o| String::from_utf8_lossy(&o.stdout).into_owned(),
            ),
            Running::Xdpvs(d) => d.log(),
        }
    }

    /// CPU seconds the director spent so far: the proxy's processes, or xdpvsd and the
    /// program's run time; none for IPVS, whose softirq work no process is charged with.
    fn cpu_seconds(&self, topo: &Topology) -> Result<Option<f64>> {
        Ok(match self {
            Running::Proxy(p) => Some(p.cpu_seconds()),
            Running::Ipvs => None,
            Running::Xdpvs(d) => {
                let info = program_info(attached_program(&topo.director)?)?;
                Some(info.run_time().as_secs_f64() + d.pid().map_or(0.0, process_cpu_seconds))
            }
        })
    }

    /// Stops the balancer: the proxy or xdpvsd ended (xdpvs detached, its pins removed), or
    /// the IPVS table cleared, so that the next one has the VIP to itself.
    fn stop(self, topo: &Topology) -> Result<()> {
        if let Running::Ipvs = self {
            topo.director.exec("ipvsadm", &["-C"])?;
        }
        Ok(())
    }
}

/// The id of the XDP program attached to the director's interface.
fn attached_program(director: &Netns) -> Result<u32> {
    let out = director.ip(&["-j", "link", "show", "dev", IFACE])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v[0]["xdp"]["prog"]["id"]
        .as_u64()
        .map(|id| id as u32)
        .context("no XDP program on the director")
}

/// What one wrk run reported: (requests per second, errors).
fn wrk(client: &Netns, plan: &Plan, close: bool) -> Result<(f64, u64, u64)> {
    let secs = format!("{}s", plan.http_time.as_secs().max(1));
    let url = format!("http://{VIP}/");
    let mut args = vec!["-t2", "-c64", "-d", &secs];
    if close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(&url);
    let out = client.exec("wrk", &args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let number_after = |label: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.trim_start().starts_with(label))?;
        line.split_once(':')?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let rate = number_after("Requests/sec").with_context(|| format!("wrk said: {text}"))?;
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let non_2xx = number_after("Non-2xx or 3xx responses").unwrap_or(0.0) as u64;
    let socket_errors: u64 = text
        .lines()
        .find(|l| l.contains("Socket errors"))
        .map(|l| {
            l.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok((rate, requests, non_2xx + socket_errors))
}

/// Requests per second of each of `balancers`: (keep-alive, a new connection per request),
/// each group in the order of `balancers`.
pub fn http_rate(
    plan: &Plan,
    balancers: &[Balancer],
    progress: &mut dyn FnMut(&Measured),
) -> Result<(Vec<Measured>, Vec<Measured>)> {
    let topo = Topology::build("bench-http", 2)?;
    let dir = std::env::temp_dir().join(unique_name("bench-http"));
    let result = measure_all(plan, balancers, &topo, &dir, progress);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn measure_all(
    plan: &Plan,
    balancers: &[Balancer],
    topo: &Topology,
    dir: &Path,
    progress: &mut dyn FnMut(&Measured),
) -> Result<(Vec<Measured>, Vec<Measured>)> {
    // Many short connections: ports are reused as soon as TIME_WAIT allows.
    for ns in [&topo.client, &topo.director] {
        ns.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
        ns.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    }
    let _web: Vec<Process> = topo
        .real_servers
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            web_server(
                ns,
                &dir.join(format!("rs{}", i + 1)),
                &format!("rs{}", i + 1),
            )
        })
        .collect::<Result<_>>()?;
    let _stats = enable_stats(Stats::RunTime).context("BPF run-time statistics")?;
    let mut groups = (Vec::new(), Vec::new());
    for close in [false, true] {
        let figures = if close { &mut groups.1 } else { &mut groups.0 };
        for &balancer in balancers {
            let running = Running::start(balancer, topo, dir)?;
            let ready = wait_until(Duration::from_secs(10), || {
                topo.client
                    .exec("curl", &["-sf", "-m", "1", &format!("http://{VIP}/")])
                    .is_ok()
            });
            if !ready {
                bail!(
                    "{} does not answer on {VIP}:80: {}",
                    balancer.name(),
                    running.log(topo)
                );
            }
            let mut runs = Vec::new();
            let mut errors = 0;
            for _ in 0..plan.runs.min(3) {
                let cpu_before = running.cpu_seconds(topo)?;
                let machine_before = cpu_times()?;
                let (rate, requests, errs) = wrk(&topo.client, plan, close)?;
                let machine_after = cpu_times()?;
                let cpu = running
                    .cpu_seconds(topo)?
                    .zip(cpu_before)
                    .map(|(after, before)| after - before);
                ensure!(requests > 0, "{}: no requests answered", balancer.name());
                let requests = requests as f64;
                let machine = (machine_after.0 - machine_before.0) as f64 / clock_ticks();
                runs.push((rate, cpu.map(|c| c / requests), machine / requests));
                errors += errs;
            }
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let median = runs[runs.len() / 2];
            let f = Measured {
                figure: Figure::of(
                    balancer.name().into(),
                    runs.iter().map(|r| r.0).collect(),
                    0,
                ),
                extras: vec![
                    Extra {
                        header: "director µs",
                        key: "director_cpu_us_per_request",
                        // JSON null where there is no figure.
                        value: median.1.map_or(f64::NAN, |c| c * 1e6),
                        text: median.1.map_or("-".into(), |c| format!("{:.2}", c * 1e6)),
                    },
                    Extra {
                        header: "machine µs",
                        key: "machine_cpu_us_per_request",
                        value: median.2 * 1e6,
                        text: format!("{:.2}", median.2 * 1e6),
                    },
                    Extra {
                        header: "errors",
                        key: "errors",
                        value: errors as f64,
                        text: errors.to_string(),
                    },
                ],
            };
            progress(&f);
            figures.push(f);
            running.stop(topo)?;
        }
    }
    Ok(groups)
}
