//! keepalived's health-check state machine, free of I/O and clocks (`now` is given, in
//! monotonic nanoseconds).
//!
//! A [`Checker`] decides, attempt by attempt, whether one checker passes and when it runs next:
//! after a failed attempt of a passing checker it retries `retry` times, `delay_before_retry`
//! apart, before it fails (so it fails after `retry + 1` failed attempts in a row, as
//! keepalived's `retry_it`); a passing attempt passes at once; otherwise the next attempt is
//! `delay_loop` later. The [`Monitor`] takes the checkers' verdicts: a real server is up while
//! all its checkers pass; a service holds its quorum with hysteresis; and it derives the
//! effective services from the configured ones.

use std::{collections::hash_map::RandomState, hash::BuildHasher, net::IpAddr, time::Duration};

use lb_common::expiry::NS;

use super::{
    check::Outcome,
    model::{Check, CheckKind, RealServerHealth, ServiceHealth},
};
use crate::{
    listing::{RealServerHealthStatus, ServiceHealthStatus},
    model::{DestSpec, ServiceAddr, ServiceSpec},
};

/// One checker of one real server of one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CheckKey {
    /// The service.
    pub service: ServiceAddr,
    /// The real server.
    pub server: IpAddr,
    /// The checker's position in the real server's list.
    pub check: usize,
}

/// A checker's verdict on its real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It passes, with the weight it asks for (`misc_dynamic`), if any.
    Pass(Option<u32>),
    /// It fails.
    Fail,
}

impl Verdict {
    /// The verdict before any attempt: failing with `alpha`, else passing.
    pub fn initial(alpha: bool) -> Self {
        if alpha { Self::Fail } else { Self::Pass(None) }
    }
}

/// One checker's verdict and schedule.
#[derive(Clone, Debug)]
pub struct Checker {
    retry: u32,
    delay_loop: Duration,
    delay_before_retry: Duration,
    verdict: Verdict,
    /// Failed attempts since the checker last passed an attempt, while it still passes.
    retries: u32,
}

impl Checker {
    /// A checker of `check` starting with `verdict`.
    pub fn new(check: &Check, verdict: Verdict) -> Self {
        Self {
            retry: check.retry,
            delay_loop: check.delay_loop,
            delay_before_retry: check.delay_before_retry,
            verdict,
            retries: 0,
        }
    }

    /// The delay before the first attempt: the fraction `unit` (in `[0, 1)`) of `warmup`.
    pub fn warmup(check: &Check, unit: f64) -> Duration {
        check.warmup.unwrap_or(check.delay_loop).mul_f64(unit)
    }

    /// A random fraction in `[0, 1)` for [`Checker::warmup`], different for every `seed`.
    pub fn random_unit(seed: u64) -> f64 {
        (RandomState::new().hash_one(seed) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Takes an attempt's outcome: the verdict if it changed, and the delay before the next
    /// attempt.
    pub fn record(&mut self, outcome: &Outcome) -> (Option<Verdict>, Duration) {
        let verdict = match outcome {
            Outcome::Up => Verdict::Pass(None),
            Outcome::Weight(w) => Verdict::Pass(Some(*w)),
            Outcome::Down(_) => Verdict::Fail,
        };
        if verdict == Verdict::Fail && self.verdict != Verdict::Fail && self.retries < self.retry {
            self.retries += 1;
            return (None, self.delay_before_retry);
        }
        self.retries = 0;
        let changed = (verdict != self.verdict).then_some(verdict);
        self.verdict = verdict;
        (changed, self.delay_loop)
    }
}

/// The name keepalived gives a checker.
pub fn kind_name(kind: &CheckKind) -> &'static str {
    match kind {
        CheckKind::Tcp => "TCP_CHECK",
        CheckKind::Http(h) if h.tls => "SSL_GET",
        CheckKind::Http(_) => "HTTP_GET",
        CheckKind::Misc(_) => "MISC_CHECK",
    }
}

/// The health of every checked real server, by service.
#[derive(Clone, Debug, Default)]
pub struct Monitor {
    services: Vec<ServiceState>,
}

#[derive(Clone, Debug)]
struct ServiceState {
    /// Its settings (the real servers are in `servers`).
    config: ServiceHealth,
    /// Whether it holds its quorum; unknown until first evaluated.
    quorum: Option<bool>,
    servers: Vec<ServerState>,
}

#[derive(Clone, Debug)]
struct ServerState {
    config: RealServerHealth,
    checkers: Vec<CheckerState>,
    up: bool,
    reason: String,
    since: u64,
    transitions: u64,
}

#[derive(Clone, Debug)]
struct CheckerState {
    verdict: Verdict,
    latency: Option<Duration>,
}

impl Monitor {
    /// Takes a new configuration at `now`: a checker whose settings did not change keeps its
    /// verdict, as a service its quorum state and a server its state; the rest start afresh.
    pub fn configure(&mut self, health: &[ServiceHealth], now: u64) {
        let old = std::mem::take(&mut self.services);
        self.services = health
            .iter()
            .map(|h| {
                let prev = old.iter().find(|o| o.config.addr == h.addr);
                let servers = h
                    .real_servers
                    .iter()
                    .map(|rs| {
                        let prev = prev.and_then(|p| p.server(rs.addr));
                        ServerState::new(rs, h.alpha, prev, now)
                    })
                    .collect();
                ServiceState {
                    config: ServiceHealth {
                        real_servers: Vec::new(),
                        ..h.clone()
                    },
                    quorum: prev.and_then(|p| p.quorum),
                    servers,
                }
            })
            .collect();
    }

    /// Takes a checker's verdict (if it changed) and its attempt's `outcome` at `now`. Returns
    /// whether the server's state or weight changed, and the notifiers to run.
    pub fn report(
        &mut self,
        key: &CheckKey,
        verdict: Option<Verdict>,
        outcome: &Outcome,
        latency: Duration,
        now: u64,
    ) -> (bool, Vec<String>) {
        let Some(service) = self
            .services
            .iter_mut()
            .find(|s| s.config.addr == key.service)
        else {
            return (false, Vec::new());
        };
        let Some(server) = service
            .servers
            .iter_mut()
            .find(|s| s.config.addr == key.server)
        else {
            return (false, Vec::new());
        };
        let Some(checker) = server.checkers.get_mut(key.check) else {
            return (false, Vec::new());
        };
        checker.latency = Some(latency);
        let Some(verdict) = verdict else {
            return (false, Vec::new());
        };
        checker.verdict = verdict;
        let up = server.passes();
        if up == server.up {
            return (true, Vec::new());
        }
        let check = &server.config.checks[key.check];
        let name = kind_name(&check.kind);
        server.reason = match outcome {
            Outcome::Down(why) => format!("{name} failed {} times: {why}", check.retry + 1),
            Outcome::Up | Outcome::Weight(_) => format!("{name} passed"),
        };
        server.up = up;
        server.since = now;
        server.transitions += 1;
        let (state, level) = if up {
            ("UP", log::Level::Info)
        } else {
            ("DOWN", log::Level::Warn)
        };
        log::log!(
            level,
            "real server {} of {} is {state}: {}",
            key.server,
            key.service,
            server.reason
        );
        let notify = if up {
            &server.config.notify_up
        } else {
            &server.config.notify_down
        };
        (true, notify.iter().cloned().collect())
    }

    /// Evaluates every service's quorum over the `configured` services: a service that holds
    /// it loses it when its live weight falls below `quorum - hysteresis`; one that lacks it
    /// regains it at `quorum + hysteresis`. Returns the quorum notifiers to run.
    pub fn update_quorum(&mut self, configured: &[ServiceSpec]) -> Vec<String> {
        let mut notify = Vec::new();
        for s in &mut self.services {
            let Some(spec) = configured.iter().find(|c| c.addr == s.config.addr) else {
                continue;
            };
            let live: u64 = spec
                .dests
                .iter()
                .filter_map(|d| s.weight_of(d))
                .map(u64::from)
                .sum();
            let (quorum, hysteresis) = (u64::from(s.config.quorum), u64::from(s.config.hysteresis));
            // As keepalived: up from quorum + hysteresis, down below quorum - hysteresis or
            // with no live weight at all.
            let holds = match s.quorum {
                None | Some(false) => live >= quorum + hysteresis,
                Some(true) => live > 0 && live >= quorum.saturating_sub(hysteresis),
            };
            if s.quorum == Some(!holds) {
                let (state, command) = if holds {
                    ("regained", &s.config.quorum_up)
                } else {
                    ("lost", &s.config.quorum_down)
                };
                log::warn!(
                    "service {}: quorum {state} (live weight {live}, quorum {quorum}, hysteresis {hysteresis})",
                    spec.addr
                );
                notify.extend(command.iter().cloned());
            }
            s.quorum = Some(holds);
        }
        notify
    }

    /// The services to install: the `configured` ones with failed real servers removed (or at
    /// weight 0 with `inhibit_on_failure`), dynamic weights applied, and the sorry server
    /// alone where the quorum is lost.
    pub fn effective(&self, configured: &[ServiceSpec]) -> Vec<ServiceSpec> {
        configured
            .iter()
            .map(|spec| match self.service(&spec.addr) {
                Some(s) => s.effective(spec),
                None => spec.clone(),
            })
            .collect()
    }

    /// The notifiers `omega` runs when the daemon stops: the down notifiers of the servers
    /// that are up and the quorum_down of the services that hold their quorum.
    pub fn stop(&self) -> Vec<String> {
        let mut notify = Vec::new();
        for s in self.services.iter().filter(|s| s.config.omega) {
            for server in s.servers.iter().filter(|r| r.up) {
                notify.extend(server.config.notify_down.iter().cloned());
            }
            if s.quorum == Some(true) {
                notify.extend(s.config.quorum_down.iter().cloned());
            }
        }
        notify
    }

    /// The health of `addr`'s checked real servers at `now`, if it has any.
    pub fn status(&self, addr: &ServiceAddr, now: u64) -> Option<ServiceHealthStatus> {
        let s = self.service(addr)?;
        Some(ServiceHealthStatus {
            quorum: s.quorum.unwrap_or(true),
            real_servers: s
                .servers
                .iter()
                .map(|r| RealServerHealthStatus {
                    addr: r.config.addr,
                    up: r.up,
                    reason: r.reason.clone(),
                    since_secs: now.saturating_sub(r.since) / NS,
                    transitions: r.transitions,
                    latencies: r
                        .checkers
                        .iter()
                        .map(|c| c.latency.map(|l| l.as_secs_f64()))
                        .collect(),
                })
                .collect(),
        })
    }

    fn service(&self, addr: &ServiceAddr) -> Option<&ServiceState> {
        self.services.iter().find(|s| s.config.addr == *addr)
    }
}

impl ServiceState {
    fn server(&self, addr: IpAddr) -> Option<&ServerState> {
        self.servers.iter().find(|s| s.config.addr == addr)
    }

    /// The weight `dest` serves with, or `None` if it is out.
    fn weight_of(&self, dest: &DestSpec) -> Option<u32> {
        match self.server(dest.addr) {
            None => Some(dest.weight),
            Some(s) if s.up => Some(s.dynamic_weight().unwrap_or(dest.weight)),
            Some(s) if s.config.inhibit_on_failure => Some(0),
            Some(_) => None,
        }
    }

    fn effective(&self, spec: &ServiceSpec) -> ServiceSpec {
        let dests = match (self.quorum, self.config.sorry_server) {
            (Some(false), Some(sorry)) => vec![DestSpec {
                addr: sorry,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            }],
            _ => spec
                .dests
                .iter()
                .filter_map(|d| {
                    Some(DestSpec {
                        weight: self.weight_of(d)?,
                        ..*d
                    })
                })
                .collect(),
        };
        ServiceSpec {
            dests,
            ..spec.clone()
        }
    }
}

impl ServerState {
    fn new(config: &RealServerHealth, alpha: bool, prev: Option<&ServerState>, now: u64) -> Self {
        let checkers = config
            .checks
            .iter()
            .enumerate()
            .map(|(i, check)| match prev {
                Some(p) if p.config.checks.get(i) == Some(check) => p.checkers[i].clone(),
                _ => CheckerState {
                    verdict: Verdict::initial(alpha),
                    latency: None,
                },
            })
            .collect();
        let mut s = Self {
            config: config.clone(),
            checkers,
            up: false,
            reason: String::new(),
            since: now,
            transitions: 0,
        };
        s.up = s.passes();
        match prev {
            Some(p) if p.up == s.up => {
                s.reason.clone_from(&p.reason);
                s.since = p.since;
                s.transitions = p.transitions;
            }
            _ if s.up => s.reason = "not checked yet".into(),
            _ => s.reason = "alpha: down until its checks pass".into(),
        }
        s
    }

    fn passes(&self) -> bool {
        self.checkers.iter().all(|c| c.verdict != Verdict::Fail)
    }

    /// The weight a dynamic checker asks for (the last one's, if several do).
    fn dynamic_weight(&self) -> Option<u32> {
        self.checkers.iter().rev().find_map(|c| match c.verdict {
            Verdict::Pass(w) => w,
            Verdict::Fail => None,
        })
    }
}

#[cfg(test)]
mod tests;
