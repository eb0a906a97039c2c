//! What the benchmark reports: tables on stdout and one JSON document, every figure with
//! its ratio to the first of its group (the baseline measured in the same run).

use std::{fmt::Write as _, fs, path::Path};

use anyhow::{Context, Result};

use crate::Figure;

/// A further value shown next to a figure: a table column and a JSON field.
#[derive(Clone, Debug)]
pub struct Extra {
    /// Column header.
    pub header: &'static str,
    /// JSON field name.
    pub key: &'static str,
    /// The value.
    pub value: f64,
    /// The value as the table shows it.
    pub text: String,
}

/// A figure with its further values.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The figure.
    pub figure: Figure,
    /// Further values, the same headers for every row of a group.
    pub extras: Vec<Extra>,
}

impl From<Figure> for Measured {
    fn from(figure: Figure) -> Self {
        Self {
            figure,
            extras: Vec::new(),
        }
    }
}

/// The rows as a table, with ratios to the first (the baseline).
pub fn table(title: &str, unit: &str, rows: &[Measured]) -> String {
    let base = rows.first().map_or(1.0, |r| r.figure.median);
    let mut out = format!(
        "{title:<48} {:>12} {:>10} {:>10} {:>8}",
        format!("median {unit}"),
        "min",
        "max",
        "ratio"
    );
    for e in rows.first().map_or(&[][..], |r| &r.extras) {
        let _ = write!(out, " {:>12}", e.header);
    }
    out.push('\n');
    for r in rows {
        let f = &r.figure;
        let _ = write!(
            out,
            "{:<48} {:>12.1} {:>10.1} {:>10.1} {:>7.2}x",
            f.name,
            f.median,
            f.min,
            f.max,
            f.median / base
        );
        for e in &r.extras {
            let _ = write!(out, " {:>12}", e.text);
        }
        out.push('\n');
    }
    out
}

fn json_rows(rows: &[Measured], unit: &str) -> Vec<serde_json::Value> {
    let base = rows.first().map_or(1.0, |r| r.figure.median);
    rows.iter()
        .map(|r| {
            let f = &r.figure;
            let mut row = serde_json::json!({
                "name": f.name, "unit": unit, "median": f.median, "min": f.min,
                "max": f.max, "ratio": f.median / base, "verdict": f.verdict,
            });
            for e in &r.extras {
                row[e.key] = e.value.into();
            }
            row
        })
        .collect()
}

/// Everything one run measured; each group's first row is its baseline.
pub struct Results {
    /// Per-packet costs in ns; the MAC-swap program first.
    pub per_packet: Vec<Measured>,
    /// Established-flow cost in ns by connection-table fill; the MAC-swap program first.
    pub flow_scaling: Vec<Measured>,
    /// Bytes of map memory per connection-table entry.
    pub bytes_per_flow: f64,
    /// Control-plane timings in ms; raw map writes first.
    pub control_plane: Vec<Measured>,
    /// The daemon's tick in CPU ms by live flows in the table, an empty table first; then
    /// one sweep expiring the fullest table.
    pub expiry: Vec<Measured>,
    /// Live forwarding rates in Mpps; the MAC-swap program first.
    pub live: Vec<Measured>,
    /// HTTP requests/s over keep-alive connections; HAProxy first.
    pub http_keep_alive: Vec<Measured>,
    /// HTTP requests/s with a new connection per request; HAProxy first.
    pub http_new_connections: Vec<Measured>,
    /// The kernel's IPVS against xdpvs in the reference VM, when it was run.
    pub reference_vm: Option<ReferenceVm>,
}

/// The HTTP run of the kernel's IPVS against xdpvs inside the reference VM: its tables and
/// its JSON, made in the VM and joined to the report of the run on this machine.
pub struct ReferenceVm {
    /// The tables and notes as printed.
    pub text: String,
    /// The figures and the VM's machine facts.
    pub json: serde_json::Value,
}

impl ReferenceVm {
    /// The files in which the VM hands its report over.
    const TEXT: &str = "reference_vm.txt";
    const JSON: &str = "reference_vm.json";

    /// The report of the two groups, each with the kernel's IPVS first.
    pub fn new(keep_alive: &[Measured], new_connections: &[Measured]) -> Self {
        let machine = machine();
        let label = format!(
            "measured under qemu software emulation (TCG) on kernel {}: compare the two rows \
             with each other only",
            machine["kernel"].as_str().unwrap_or_default()
        );
        let groups = [
            ("keep-alive", keep_alive),
            ("new connection per request", new_connections),
        ];
        let mut text = format!("reference VM, {label}\n");
        let mut notes = Vec::new();
        for (kind, rows) in groups {
            text += &table(&format!("HTTP in the VM, {kind}"), "req/s", rows);
            if let [ipvs, xdpvs] = rows {
                let per = |m: &Measured| m.extra("machine_cpu_us_per_request").unwrap_or(0.0);
                notes.push(format!(
                    "note: reference VM, HTTP {kind}: xdpvs / IPVS = {:.2}x requests/s, {:.2}x \
                     machine CPU per request",
                    xdpvs.figure.median / ipvs.figure.median,
                    per(xdpvs) / per(ipvs)
                ));
            }
        }
        for note in &notes {
            let _ = writeln!(text, "{note}");
        }
        let json = serde_json::json!({
            "label": label,
            "machine": machine,
            "http_keep_alive": json_rows(keep_alive, "requests/s"),
            "http_new_connections": json_rows(new_connections, "requests/s"),
            "notes": notes,
        });
        Self { text, json }
    }

    /// Writes the report into `dir`, where [`ReferenceVm::load`] finds it.
    pub fn save(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir)?;
        fs::write(dir.join(Self::TEXT), &self.text)?;
        fs::write(
            dir.join(Self::JSON),
            serde_json::to_string_pretty(&self.json)?,
        )?;
        Ok(())
    }

    /// The report [`ReferenceVm::save`] wrote into `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            fs::read_to_string(dir.join(name))
                .with_context(|| format!("the reference VM's {name} in {}", dir.display()))
        };
        Ok(Self {
            text: read(Self::TEXT)?,
            json: serde_json::from_str(&read(Self::JSON)?)?,
        })
    }
}

impl Measured {
    /// The value of the extra named `key`.
    pub fn extra(&self, key: &str) -> Option<f64> {
        self.extras.iter().find(|e| e.key == key).map(|e| e.value)
    }
}

/// The number of CPUs of this machine.
fn cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

impl Results {
    /// What limited the live and HTTP figures, from their own measurements.
    pub fn notes(&self) -> String {
        let mut out = String::new();
        if let Some(base) = self.live.first() {
            let busy = base.extra("cpu_busy").unwrap_or(0.0) * cpus();
            let _ = writeln!(
                out,
                "note: generator, director and sink share one core (baseline: {busy:.2} of {} \
                 CPUs busy); the baseline's {:.1} Mpps is that pipeline's ceiling, set by the \
                 generator, and xdpvs's ratios are its extra cost within it",
                cpus(),
                base.figure.median
            );
        }
        for (kind, group) in [
            ("keep-alive", &self.http_keep_alive),
            ("new connections", &self.http_new_connections),
        ] {
            for m in group {
                let us = m.extra("machine_cpu_us_per_request").unwrap_or(0.0);
                let busy = us * m.figure.median / 1e6;
                let _ = writeln!(
                    out,
                    "note: HTTP {kind}, {}: {busy:.2} of {} CPUs busy (client, real servers and \
                     director share them)",
                    m.figure.name,
                    cpus()
                );
            }
        }
        out
    }

    /// Every group as a table.
    pub fn tables(&self) -> String {
        [
            table("per packet (BPF_PROG_TEST_RUN)", "ns", &self.per_packet),
            table("established flow by table fill", "ns", &self.flow_scaling),
            format!(
                "map memory per connection-table entry: {:.0} bytes\n",
                self.bytes_per_flow
            ),
            table("control plane", "ms", &self.control_plane),
            table(
                "connection table expiry (CPU, once a second)",
                "ms",
                &self.expiry,
            ),
            table("live forwarding rate (XDP live frames)", "Mpps", &self.live),
            table(
                "HTTP, keep-alive (wrk -t2 -c64)",
                "req/s",
                &self.http_keep_alive,
            ),
            table(
                "HTTP, new connection per request",
                "req/s",
                &self.http_new_connections,
            ),
            self.reference_vm
                .as_ref()
                .map_or(String::new(), |vm| vm.text.clone()),
        ]
        .concat()
    }
}

/// The facts of the machine this runs on.
fn machine() -> serde_json::Value {
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    serde_json::json!({
        "kernel": run("uname", &["-r"]),
        "cpus": run("nproc", &[]),
        "cpu": run("sh", &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]),
    })
}

/// The figures and the machine facts as JSON.
pub fn json(r: &Results) -> serde_json::Value {
    serde_json::json!({
        "machine": machine(),
        "per_packet": json_rows(&r.per_packet, "ns"),
        "flow_scaling": json_rows(&r.flow_scaling, "ns"),
        "bytes_per_flow": r.bytes_per_flow,
        "control_plane": json_rows(&r.control_plane, "ms"),
        "expiry": json_rows(&r.expiry, "ms"),
        "live_rate": json_rows(&r.live, "Mpps"),
        "http_keep_alive": json_rows(&r.http_keep_alive, "requests/s"),
        "http_new_connections": json_rows(&r.http_new_connections, "requests/s"),
        "notes": r.notes().lines().collect::<Vec<_>>(),
        "reference_vm": r.reference_vm.as_ref().map(|vm| &vm.json),
    })
}
