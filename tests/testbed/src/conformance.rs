//! The conformance corpus's runner: each scenario on a fresh DR topology, its director driven
//! either by the kernel's IPVS with ipvsadm or by xdpvsd with xdpvsadm, and a transcript of
//! what a user sees. `cargo xtask conformance` runs it inside the reference VM, once per
//! director, and compares the two transcripts.
//!
//! A corpus file holds scenarios; `#` starts a comment. A scenario starts with
//! `scenario NAME [SERVERS]` (3 real servers unless given) and runs these steps in order:
//!
//! | step | what it does, and what the transcript records |
//! | --- | --- |
//! | `adm ARGS` | ipvsadm (or xdpvsadm) with ARGS in the director: exit code, stdout, stderr |
//! | `connect N [from IP]` | N new connections, one HTTP request each: the real servers' names |
//! | `connect6 N` | as `connect`, to the IPv6 VIP (`[fd77::100]:80`) |
//! | `open ID [from IP]` | a kept-alive connection named ID and its first answer |
//! | `get ID` | one more request on connection ID: the answer |
//! | `close ID` | closes connection ID |
//! | `udp N` | N datagrams, each from a new socket: the names |
//! | `client IP` | gives the client a further address |
//! | `settle` | waits until only the kept-alive connections are in SYN_RECV or ESTABLISHED and the counters show every connection made (IPVS folds its per-CPU counters every 2 s); records nothing unless it times out |
//! | `metrics` | scrapes node_exporter's IPVS families: for IPVS from node_exporter itself (its ipvs collector alone, on the director's loopback: /proc/net/ip_vs* are the namespace's), for xdpvs from xdpvsd's endpoint; the `node_ipvs_*` samples, sorted |

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    process::{Child, Output, Stdio},
    str::FromStr,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    cluster::{split, vip, wait_until},
    daemon::{Daemon, default_bin_dir},
    netns::{Netns, unique_name},
    servers::{self, HttpClient, NamedServers},
    topology::{IFACE, Topology, VIP6},
};

/// Which director a run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The kernel's IPVS, configured with ipvsadm.
    Ipvs,
    /// xdpvsd, configured with xdpvsadm.
    Xdpvs,
}

impl FromStr for Backend {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ipvs" => Ok(Self::Ipvs),
            "xdpvs" => Ok(Self::Xdpvs),
            _ => bail!("unknown backend {s:?} (ipvs or xdpvs)"),
        }
    }
}

/// Where the director serves its metrics (node_exporter's default port): xdpvsd for its whole
/// run, node_exporter for one scrape.
const METRICS: &str = "127.0.0.1:9100";

/// One scenario of a corpus file.
#[derive(Debug)]
pub struct Scenario {
    /// Its name, unique in the corpus.
    pub name: String,
    /// Real servers in its topology.
    pub servers: usize,
    /// Its steps, each a line of the file.
    pub steps: Vec<String>,
}

/// Parses a corpus file's text.
pub fn parse(text: &str) -> Result<Vec<Scenario>> {
    let mut scenarios: Vec<Scenario> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        if words.next() == Some("scenario") {
            let name = words.next().context("scenario without a name")?.to_owned();
            let servers = words.next().map_or(Ok(3), str::parse)?;
            scenarios.push(Scenario {
                name,
                servers,
                steps: Vec::new(),
            });
        } else {
            scenarios
                .last_mut()
                .with_context(|| format!("line {}: a step before any scenario", n + 1))?
                .steps
                .push(line.to_owned());
        }
    }
    Ok(scenarios)
}

/// The director of a running scenario.
enum Director {
    Ipvs,
    Xdpvs(Daemon),
}

/// A scenario's running test bed. Fields drop in order: the daemon and the servers before
/// their namespaces.
struct Bed {
    director: Director,
    connections: HashMap<String, HttpClient>,
    /// Connections made so far (TCP and UDP), which the services' counters reach in the end.
    made: u64,
    _servers: Vec<NamedServers>,
    topo: Topology,
}

impl Bed {
    fn start(backend: Backend, servers: usize) -> Result<Self> {
        let topo = Topology::build("cf", servers)?;
        let named = servers::on_real_servers(&topo)?;
        let director = match backend {
            Backend::Ipvs => Director::Ipvs,
            Backend::Xdpvs => {
                let mut daemon = Daemon::paths(&default_bin_dir(), &unique_name("cf"))?;
                daemon.args = vec!["--metrics".into(), METRICS.into()];
                daemon.restart(&topo.director, None)?;
                Director::Xdpvs(daemon)
            }
        };
        Ok(Self {
            director,
            connections: HashMap::new(),
            made: 0,
            _servers: named,
            topo,
        })
    }

    fn adm(&self, args: &[&str]) -> Result<Output> {
        match &self.director {
            Director::Ipvs => Ok(self.topo.director.command("ipvsadm").args(args).output()?),
            Director::Xdpvs(daemon) => daemon.adm(args),
        }
    }

    /// Before traffic: xdpvs schedules only real servers whose MAC it knows (the kernel
    /// resolves on the first packet instead). A server that stays unresolved shows in the
    /// transcript as the connections it does not get.
    fn ready(&self) {
        if let Director::Xdpvs(daemon) = &self.director {
            let _ = daemon.wait_resolved();
        }
    }

    /// The connections the services' counters show, summed.
    fn counted(&self) -> Result<u64> {
        let o = self.adm(&["-Ln", "--stats", "--exact"])?;
        Ok(String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("TCP") || l.starts_with("UDP"))
            .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
            .sum())
    }

    /// The director's metrics page: xdpvsd's, or node_exporter's started for it.
    fn scrape(&self) -> Result<String> {
        let _exporter = match self.director {
            Director::Ipvs => Some(NodeExporter::start(&self.topo.director)?),
            Director::Xdpvs(_) => None,
        };
        let url = format!("http://{METRICS}/metrics");
        let mut page = None;
        wait_until(Duration::from_secs(10), || {
            page = self
                .topo
                .director
                .command("curl")
                .args(["-sf", "--max-time", "5", &url])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            page.is_some()
        });
        page.with_context(|| format!("no answer from {url}"))
    }

    /// `n` new connections from the client (from `src` if given) to `to`, one request each:
    /// the names of the real servers that answered.
    fn connect(
        &mut self,
        n: usize,
        src: Option<Ipv4Addr>,
        to: SocketAddr,
        out: &mut String,
    ) -> Result<()> {
        self.ready();
        let names = self.topo.client.enter(move || {
            (0..n)
                .map(|_| answer(HttpClient::connect_from(src, to).and_then(|mut c| c.get())))
                .collect::<Vec<_>>()
        })?;
        self.made += n as u64;
        writeln!(out, "> {}", names.join(" "))?;
        Ok(())
    }

    /// Runs one step and appends its record to `out`.
    fn step(&mut self, line: &str, out: &mut String) -> Result<()> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let from = |rest: &[&str]| -> Result<Option<Ipv4Addr>> {
            match rest {
                [] => Ok(None),
                ["from", ip] => Ok(Some(ip.parse()?)),
                _ => bail!("expected `from IP`, got {rest:?}"),
            }
        };
        match words.as_slice() {
            ["adm", args @ ..] => {
                let o = self.adm(args)?;
                let code = o.status.code().map_or("signal".into(), |c| c.to_string());
                writeln!(out, "exit {code}")?;
                for l in String::from_utf8_lossy(&o.stdout).lines() {
                    writeln!(out, "> {l}")?;
                }
                for l in String::from_utf8_lossy(&o.stderr).lines() {
                    writeln!(out, "! {l}")?;
                }
            }
            ["connect", n, rest @ ..] => self.connect(n.parse()?, from(rest)?, vip(80), out)?,
            ["connect6", n] => {
                self.connect(n.parse()?, None, SocketAddr::from((VIP6, 80)), out)?;
            }
            ["open", id, rest @ ..] => {
                self.ready();
                let src = from(rest)?;
                let conn = self
                    .topo
                    .client
                    .enter(move || HttpClient::connect_from(src, vip(80)))?;
                self.made += 1;
                match conn {
                    Ok(mut c) => {
                        writeln!(out, "> {}", answer(c.get()))?;
                        self.connections.insert((*id).to_owned(), c);
                    }
                    Err(e) => writeln!(out, "> error: {e}")?,
                }
            }
            ["get", id] => {
                let reply = match self.connections.get_mut(*id) {
                    Some(c) => answer(c.get()),
                    None => "no such connection".into(),
                };
                writeln!(out, "> {reply}")?;
            }
            ["close", id] => {
                self.connections.remove(*id);
            }
            ["udp", n] => {
                self.ready();
                let n: usize = n.parse()?;
                let names = self.topo.client.enter(move || {
                    (0..n)
                        .map(|_| answer(servers::udp_ask(vip(53))))
                        .collect::<Vec<_>>()
                })?;
                self.made += n as u64;
                writeln!(out, "> {}", names.join(" "))?;
            }
            ["client", ip] => {
                self.topo
                    .client
                    .ip(&["addr", "add", &format!("{ip}/24"), "dev", IFACE])?;
            }
            ["settle"] => {
                let settled = wait_until(Duration::from_secs(10), || {
                    let open = self.adm(&["-Lnc"]).map_or(usize::MAX, |o| {
                        String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .filter(|l| l.contains("SYN_RECV") || l.contains("ESTABLISHED"))
                            .count()
                    });
                    open <= self.connections.len() && self.counted().is_ok_and(|n| n >= self.made)
                });
                if !settled {
                    writeln!(out, "> settle timed out")?;
                }
            }
            ["metrics"] => match self.scrape() {
                Ok(page) => {
                    let mut samples: Vec<&str> = page
                        .lines()
                        .filter(|l| l.starts_with("node_ipvs_"))
                        .collect();
                    samples.sort_unstable();
                    for l in samples {
                        writeln!(out, "> {l}")?;
                    }
                }
                Err(e) => writeln!(out, "> error: {e:#}")?,
            },
            _ => bail!("unknown step {line:?}"),
        }
        Ok(())
    }
}

/// Prometheus node_exporter (Debian's `prometheus-node-exporter`) with its ipvs collector
/// alone, listening on [`METRICS`] in a namespace; stopped on drop.
struct NodeExporter(Child);

impl NodeExporter {
    fn start(ns: &Netns) -> Result<Self> {
        let child = ns
            .command("prometheus-node-exporter")
            .args([
                "--collector.disable-defaults",
                "--collector.ipvs",
                &format!("--web.listen-address={METRICS}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus-node-exporter")?;
        Ok(Self(child))
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The name of the real server that answered, or the error.
fn answer(reply: Result<String>) -> String {
    match reply {
        Ok(body) => split(&body).0,
        Err(_) => "error".into(),
    }
}

/// Runs `scenario` against `backend` on a fresh topology, appending its transcript to `out`:
/// `== scenario NAME`, then each step as `$ STEP` followed by its record.
pub fn run(backend: Backend, scenario: &Scenario, out: &mut String) -> Result<()> {
    writeln!(out, "== scenario {}", scenario.name)?;
    let mut bed = Bed::start(backend, scenario.servers).context("starting the test bed")?;
    for step in &scenario.steps {
        writeln!(out, "$ {step}")?;
        bed.step(step, out).with_context(|| step.clone())?;
    }
    Ok(())
}
