//! Compares the two transcripts of the corpus, the kernel's IPVS as the reference, line by line
//! after masking what depends on timing; a difference fails unless the allow-list names it.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde::Deserialize;

/// One scenario's steps, each its line and its record.
pub struct Scenario {
    pub name: String,
    pub steps: Vec<Step>,
}

pub struct Step {
    pub command: String,
    pub lines: Vec<String>,
}

/// Parses a transcript of `xdpvs-conformance`. Lines before a scenario's first step (a runner
/// error) form a step of their own with an empty command.
pub fn parse(text: &str) -> Vec<Scenario> {
    let mut scenarios: Vec<Scenario> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== scenario ") {
            scenarios.push(Scenario {
                name: name.to_owned(),
                steps: Vec::new(),
            });
            continue;
        }
        let Some(scenario) = scenarios.last_mut() else {
            continue;
        };
        if let Some(command) = line.strip_prefix("$ ") {
            scenario.steps.push(Step {
                command: command.to_owned(),
                lines: Vec::new(),
            });
        } else {
            if scenario.steps.is_empty() {
                scenario.steps.push(Step {
                    command: String::new(),
                    lines: Vec::new(),
                });
            }
            let step = scenario.steps.last_mut().expect("pushed above");
            step.lines.push(line.to_owned());
        }
    }
    scenarios
}

/// The allow-list file: differences accepted for now, each with its reason.
#[derive(Deserialize)]
pub struct AllowList {
    #[serde(default)]
    allow: Vec<Allow>,
}

/// An accepted difference: every differing line pair of the steps it matches, or only those
/// where either side contains `contains`.
#[derive(Deserialize)]
struct Allow {
    /// A scenario name; a trailing `*` matches a prefix, `*` alone every scenario.
    scenario: String,
    /// A step as written in the corpus, with the same wildcard.
    step: String,
    contains: Option<String>,
    reason: String,
}

impl AllowList {
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).context("parsing the allow-list")
    }

    /// The first entry that accepts lines `ipvs` / `xdpvs` of `step` in `scenario`.
    fn reason(&self, scenario: &str, step: &str, ipvs: &str, xdpvs: &str) -> Option<usize> {
        self.allow.iter().position(|a| {
            glob(&a.scenario, scenario)
                && glob(&a.step, step)
                && a.contains
                    .as_deref()
                    .is_none_or(|c| ipvs.contains(c) || xdpvs.contains(c))
        })
    }
}

fn glob(pattern: &str, s: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => s.starts_with(prefix),
        None => pattern == s,
    }
}

/// What the comparison found.
pub struct Outcome {
    pub scenarios: usize,
    pub steps: usize,
    /// Differing line pairs no entry accepts.
    pub failures: usize,
    /// Differing line pairs an entry accepts.
    pub allowed: usize,
    /// Every difference, by scenario and step, with the reason where one was given.
    pub report: String,
    /// Allow-list entries that accepted nothing.
    pub unused: Vec<String>,
}

/// Compares the xdpvs transcript with the IPVS one under the masking rules and `allow`.
pub fn compare(ipvs: &[Scenario], xdpvs: &[Scenario], allow: &AllowList) -> Outcome {
    let mut out = Outcome {
        scenarios: ipvs.len(),
        steps: 0,
        failures: 0,
        allowed: 0,
        report: String::new(),
        unused: Vec::new(),
    };
    let mut used = vec![false; allow.allow.len()];
    for reference in ipvs {
        let empty = Vec::new();
        let steps = xdpvs
            .iter()
            .find(|s| s.name == reference.name)
            .map_or(&empty, |s| &s.steps);
        for i in 0..reference.steps.len().max(steps.len()) {
            out.steps += 1;
            let (r, x) = (reference.steps.get(i), steps.get(i));
            let command = r.or(x).map_or("", |s| s.command.as_str());
            let r = r.map(masked).unwrap_or_default();
            let x = x.map(masked).unwrap_or_default();
            let mut header = false;
            for (a, b) in differing(&r, &x) {
                if !header {
                    header = true;
                    let _ = writeln!(out.report, "[{}] $ {command}", reference.name);
                }
                let verdict = match allow.reason(&reference.name, command, a, b) {
                    Some(k) => {
                        used[k] = true;
                        out.allowed += 1;
                        format!("allowed: {}", allow.allow[k].reason)
                    }
                    None => {
                        out.failures += 1;
                        "NOT ALLOWED".into()
                    }
                };
                let _ = writeln!(
                    out.report,
                    "  ipvs : {a}\n  xdpvs: {b}\n         ({verdict})"
                );
            }
        }
    }
    out.unused = allow
        .allow
        .iter()
        .zip(used)
        .filter(|(_, used)| !used)
        .map(|(a, _)| format!("{} / {}: {}", a.scenario, a.step, a.reason))
        .collect();
    out
}

/// The lines where `a` and `b` differ, as pairs: a longest common subsequence of lines
/// matches, and within each run of unmatched lines the i-th of `a` pairs with the i-th of `b`
/// (a line one side lacks pairs with "").
fn differing<'a>(a: &'a [String], b: &'a [String]) -> Vec<(&'a str, &'a str)> {
    // common[i][j]: the length of a longest common subsequence of a[i..] and b[j..].
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut out, mut only_a, mut only_b) = (Vec::new(), Vec::new(), Vec::new());
    let flush = |out: &mut Vec<_>, only_a: &mut Vec<&'a str>, only_b: &mut Vec<&'a str>| {
        for k in 0..only_a.len().max(only_b.len()) {
            out.push((
                only_a.get(k).copied().unwrap_or(""),
                only_b.get(k).copied().unwrap_or(""),
            ));
        }
        only_a.clear();
        only_b.clear();
    };
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            flush(&mut out, &mut only_a, &mut only_b);
            (i, j) = (i + 1, j + 1);
        } else if j == b.len() || (i < a.len() && common[i + 1][j] >= common[i][j + 1]) {
            only_a.push(a[i].as_str());
            i += 1;
        } else {
            only_b.push(b[j].as_str());
            j += 1;
        }
    }
    flush(&mut out, &mut only_a, &mut only_b);
    out
}

/// A step's lines with what depends on timing masked: in connection listings (`-c`) the
/// remaining time and the client's port, and the rows sorted (the kernel lists them in hash
/// order, which follows the random client ports); in `--rate` listings the rates; and the
/// program's own name, which the user typed differently.
fn masked(step: &Step) -> Vec<String> {
    let rates = step.command.contains("--rate");
    let mut lines: Vec<String> = step
        .lines
        .iter()
        .map(|line| {
            let line = line.replace("xdpvsadm", "ipvsadm");
            let fields = fields(&line);
            let mut bytes = line.clone().into_bytes();
            let mut hide = |(start, end): (usize, usize)| {
                for b in &mut bytes[start..end] {
                    if b.is_ascii_digit() {
                        *b = b'#';
                    }
                }
            };
            let field = |f: &(usize, usize)| &line[f.0..f.1];
            let is_row = |f| matches!(field(f), "TCP" | "UDP" | "->");
            let is_expiry = |f| {
                let b = field(f).as_bytes();
                b.len() == 5 && b[2] == b':' && b.iter().filter(|c| c.is_ascii_digit()).count() == 4
            };
            match fields.as_slice() {
                // `> TCP 01:58 FIN_WAIT 10.0.0.1:40000 VIP:80 RIP:80`
                [_, proto, expire, _, client, _, _]
                    if matches!(field(proto), "TCP" | "UDP") && is_expiry(expire) =>
                {
                    hide(*expire);
                    let port = line[client.0..client.1].rfind(':').map_or(0, |p| p + 1);
                    hide((client.0 + port, client.1));
                }
                [_, first, _, rest @ ..] if rates && is_row(first) => {
                    rest.iter().copied().for_each(hide);
                }
                _ => {}
            }
            String::from_utf8(bytes).expect("only ASCII digits were replaced")
        })
        .collect();
    if let Some(header) = lines
        .iter()
        .position(|l| l.starts_with("> pro expire state"))
    {
        lines[header + 1..].sort();
    }
    lines
}

/// The byte ranges of a line's whitespace-separated fields.
fn fields(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices().chain([(line.len(), ' ')]) {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(command: &str, lines: &[&str]) -> Step {
        Step {
            command: command.into(),
            lines: lines.iter().map(|l| (*l).into()).collect(),
        }
    }

    #[test]
    fn connection_rows_hide_expiry_and_client_port_only() {
        let s = step(
            "adm -Lnc",
            &["> TCP 01:58  FIN_WAIT    10.77.0.10:41234   10.77.0.100:80     10.77.0.21:80"],
        );
        assert_eq!(
            masked(&s),
            ["> TCP ##:##  FIN_WAIT    10.77.0.10:#####   10.77.0.100:80     10.77.0.21:80"]
        );
        let table = step(
            "adm -Lnc",
            &[
                "> pro expire state       source             virtual            destination",
                "> TCP 01:58  FIN_WAIT    10.77.0.10:41234   10.77.0.100:80     10.77.0.22:80",
                "> TCP 01:59  FIN_WAIT    10.77.0.10:41236   10.77.0.100:80     10.77.0.21:80",
            ],
        );
        assert!(masked(&table)[1].ends_with("10.77.0.21:80"));
    }

    #[test]
    fn rates_are_hidden_but_addresses_kept() {
        let s = step(
            "adm -Ln --rate",
            &[
                "> TCP  10.77.0.100:80  3  12  0  900  0",
                ">   -> 10.77.0.21:80  1  4  0  300  0",
            ],
        );
        assert_eq!(
            masked(&s),
            [
                "> TCP  10.77.0.100:80  #  ##  #  ###  #",
                ">   -> 10.77.0.21:80  #  #  #  ###  #"
            ]
        );
    }

    #[test]
    fn real_server_rows_are_not_connections() {
        let row = ">   -> 10.77.0.21:80                Route   1      0          2         ";
        assert_eq!(masked(&step("adm -Ln", &[row])), [row]);
    }

    #[test]
    fn a_missing_line_is_one_difference() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (a, b) = (lines(&["h", "x", "1", "2"]), lines(&["h", "1", "y", "2"]));
        assert_eq!(differing(&a, &b), [("x", ""), ("", "y")]);
        let (a, b) = (lines(&["h", "p", "2"]), lines(&["h", "q", "2"]));
        assert_eq!(differing(&a, &b), [("p", "q")]);
    }

    #[test]
    fn a_difference_fails_unless_an_entry_accepts_it() {
        let ipvs = parse("== scenario a\n$ adm -Ln\nexit 0\n> size=4096\n$ connect 2\n> rs1 rs2\n");
        let xdpvs =
            parse("== scenario a\n$ adm -Ln\nexit 0\n> size=65536\n$ connect 2\n> rs2 rs1\n");
        let allow = AllowList::parse(
            "[[allow]]\nscenario = \"*\"\nstep = \"adm -L*\"\ncontains = \"size=\"\nreason = \"r\"\n\
             [[allow]]\nscenario = \"b\"\nstep = \"*\"\nreason = \"unused\"\n",
        )
        .unwrap();
        let out = compare(&ipvs, &xdpvs, &allow);
        assert_eq!((out.scenarios, out.steps), (1, 2));
        assert_eq!((out.allowed, out.failures), (1, 1));
        assert_eq!(out.unused, ["b / *: unused"]);
        assert!(
            out.report
                .contains("[a] $ connect 2\n  ipvs : > rs1 rs2\n  xdpvs: > rs2 rs1")
        );
    }
}
