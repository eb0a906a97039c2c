use std::net::{IpAddr, Ipv4Addr};

use lb_common::sched::Scheduler;

use super::*;
use crate::model::tcp_service;

const SEC: u64 = NS;

fn tcp_check(delay_loop: u64, connect_timeout: u64, retry: u32, delay_before_retry: u64) -> Check {
    Check {
        kind: CheckKind::Tcp,
        connect_ip: None,
        connect_port: None,
        bindto: None,
        delay_loop: Duration::from_secs(delay_loop),
        connect_timeout: Duration::from_secs(connect_timeout),
        retry,
        delay_before_retry: Duration::from_secs(delay_before_retry),
        warmup: Some(Duration::ZERO),
    }
}

/// Runs `check` on a virtual clock (seconds) against a server that answers while `alive(t)`;
/// a failed attempt takes the whole connect_timeout. Returns the verdict changes with their
/// times, up to `until`.
fn simulate(check: &Check, alive: impl Fn(u64) -> bool, until: u64) -> Vec<(u64, Verdict)> {
    let mut checker = Checker::new(check, Verdict::initial(false));
    let mut t = Checker::warmup(check, 0.0).as_secs();
    let mut changes = Vec::new();
    while t <= until {
        let outcome = if alive(t) {
            Outcome::Up
        } else {
            t += check.connect_timeout.as_secs();
            Outcome::Down("refused".into())
        };
        let (changed, next) = checker.record(&outcome);
        changes.extend(changed.map(|v| (t, v)));
        t += next.as_secs();
    }
    changes
}

#[test]
fn a_failed_server_goes_down_after_retry_plus_one_failures_and_comes_back_at_once() {
    let check = tcp_check(10, 2, 2, 3);
    // Passes at 0, 10, 20; dies at 25: fails at 30+2, 35+2, 40+2 (retry 2 = two retries).
    // Back at 50: the attempt at 52 passes.
    let changes = simulate(&check, |t| !(25..50).contains(&t), 70);
    assert_eq!(
        changes,
        [(42, Verdict::Fail), (52, Verdict::Pass(None))],
        "the issue's bound: last pass + delay_loop + (retry + 1) x connect_timeout + retry x delay_before_retry"
    );
}

#[test]
fn one_failure_between_passes_is_no_transition() {
    // Every other attempt fails: with retry 1 the retry passes each time.
    let check = tcp_check(10, 1, 1, 1);
    let changes = simulate(&check, |t| (t / 10) % 2 == 0 || t % 10 != 0, 200);
    assert_eq!(changes, []);
    // With retry 0 (MISC_CHECK's default) the first failure is a transition.
    let check = tcp_check(10, 1, 0, 1);
    let changes = simulate(&check, |t| t < 15, 30);
    assert_eq!(changes, [(21, Verdict::Fail)]);
}

#[test]
fn warmup_defaults_to_delay_loop_and_zero_disables_it() {
    let mut check = tcp_check(10, 1, 1, 1);
    assert_eq!(Checker::warmup(&check, 0.5), Duration::ZERO);
    check.warmup = None;
    assert_eq!(Checker::warmup(&check, 0.5), Duration::from_secs(5));
    check.warmup = Some(Duration::from_secs(4));
    assert_eq!(Checker::warmup(&check, 0.5), Duration::from_secs(2));
    let unit = Checker::random_unit(7);
    assert!((0.0..1.0).contains(&unit));
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 0, last)
}

fn configured(weights: &[u32]) -> Vec<ServiceSpec> {
    let mut s = tcp_service(
        80,
        Scheduler::Wrr,
        (1..=weights.len() as u8).map(|i| ip(i).into()),
    );
    for (d, w) in s.dests.iter_mut().zip(weights) {
        d.weight = *w;
    }
    vec![s]
}

fn real_server(last: u8, checks: usize) -> RealServerHealth {
    RealServerHealth {
        addr: std::net::IpAddr::V4(ip(last)),
        inhibit_on_failure: false,
        notify_up: Some(format!("up {last}")),
        notify_down: Some(format!("down {last}")),
        checks: vec![tcp_check(1, 1, 1, 1); checks],
    }
}

fn health(servers: Vec<RealServerHealth>) -> ServiceHealth {
    let mut h = ServiceHealth::new(configured(&[])[0].addr);
    h.real_servers = servers;
    h
}

fn key(last: u8, check: usize) -> CheckKey {
    CheckKey {
        service: configured(&[])[0].addr,
        server: std::net::IpAddr::V4(ip(last)),
        check,
    }
}

fn report(m: &mut Monitor, last: u8, check: usize, verdict: Verdict) -> (bool, Vec<String>) {
    let outcome = match verdict {
        Verdict::Pass(None) => Outcome::Up,
        Verdict::Pass(Some(w)) => Outcome::Weight(w),
        Verdict::Fail => Outcome::Down("connection refused".into()),
    };
    m.report(
        &key(last, check),
        Some(verdict),
        &outcome,
        Duration::from_millis(3),
        100 * SEC,
    )
}

/// The effective real servers of the one service as (last octet, weight).
fn dests(m: &mut Monitor, configured: &[ServiceSpec]) -> Vec<(u8, u32)> {
    m.update_quorum(configured);
    m.effective(configured)[0]
        .dests
        .iter()
        .map(|d| {
            let IpAddr::V4(a) = d.addr else {
                panic!("{}", d.addr)
            };
            (a.octets()[3], d.weight)
        })
        .collect()
}

#[test]
fn a_server_is_up_while_all_its_checkers_pass() {
    let c = configured(&[1, 2, 3]);
    let mut m = Monitor::default();
    // Server 3 has no checker: always up.
    m.configure(&[health(vec![real_server(1, 2), real_server(2, 1)])], 0);
    assert_eq!(dests(&mut m, &c), [(1, 1), (2, 2), (3, 3)]);
    assert_eq!(
        report(&mut m, 1, 1, Verdict::Fail),
        (true, vec!["down 1".into()])
    );
    assert_eq!(dests(&mut m, &c), [(2, 2), (3, 3)]);
    // Its other checker failing too changes nothing more, and runs no notifier.
    assert_eq!(report(&mut m, 1, 0, Verdict::Fail), (true, vec![]));
    assert_eq!(report(&mut m, 1, 1, Verdict::Pass(None)), (true, vec![]));
    assert_eq!(dests(&mut m, &c), [(2, 2), (3, 3)]);
    assert_eq!(
        report(&mut m, 1, 0, Verdict::Pass(None)),
        (true, vec!["up 1".into()])
    );
    assert_eq!(dests(&mut m, &c), [(1, 1), (2, 2), (3, 3)]);
    // Attempts that change no verdict change nothing but the latency.
    let unchanged = m.report(&key(2, 0), None, &Outcome::Up, Duration::from_secs(1), 0);
    assert_eq!(unchanged, (false, vec![]));
    let status = m.status(&c[0].addr, 130 * SEC).unwrap();
    let rs1 = &status.real_servers[0];
    assert!(
        rs1.up && rs1.transitions == 2 && rs1.since_secs == 30,
        "{rs1:?}"
    );
    assert_eq!(rs1.reason, "TCP_CHECK passed");
    assert_eq!(status.real_servers[1].latencies, [Some(1.0)]);
}

#[test]
fn inhibit_on_failure_keeps_the_server_at_weight_0_and_reasons_name_the_checker() {
    let c = configured(&[2, 1]);
    let mut m = Monitor::default();
    let mut rs1 = real_server(1, 1);
    rs1.inhibit_on_failure = true;
    m.configure(&[health(vec![rs1])], 0);
    report(&mut m, 1, 0, Verdict::Fail);
    assert_eq!(dests(&mut m, &c), [(1, 0), (2, 1)]);
    let rs1 = &m.status(&c[0].addr, 100 * SEC).unwrap().real_servers[0];
    assert!(!rs1.up);
    assert_eq!(rs1.reason, "TCP_CHECK failed 2 times: connection refused");
}

#[test]
fn alpha_starts_down_and_dynamic_weights_apply() {
    let c = configured(&[1, 1]);
    let mut m = Monitor::default();
    let mut h = health(vec![real_server(1, 1), real_server(2, 1)]);
    h.alpha = true;
    h.sorry_server = Some(std::net::IpAddr::V4(ip(9)));
    m.configure(&[h], 0);
    // Both down: no live weight, so the sorry server serves.
    assert_eq!(dests(&mut m, &c), [(9, 1)]);
    report(&mut m, 1, 0, Verdict::Pass(Some(5)));
    assert_eq!(dests(&mut m, &c), [(1, 5)]);
    report(&mut m, 2, 0, Verdict::Pass(None));
    report(&mut m, 1, 0, Verdict::Pass(Some(3)));
    assert_eq!(dests(&mut m, &c), [(1, 3), (2, 1)]);
}

#[test]
fn quorum_has_hysteresis_and_the_sorry_server_replaces_everyone() {
    let c = configured(&[1, 1, 1]);
    let mut m = Monitor::default();
    let mut h = health((1..=3).map(|i| real_server(i, 1)).collect());
    (h.quorum, h.hysteresis) = (2, 1);
    h.sorry_server = Some(std::net::IpAddr::V4(ip(9)));
    h.quorum_up = Some("quorum up".into());
    h.quorum_down = Some("quorum down".into());
    m.configure(&[h], 0);
    assert!(
        m.update_quorum(&c).is_empty(),
        "the first evaluation notifies nobody"
    );
    let mut quorum_notes = Vec::new();
    let mut step = |m: &mut Monitor, last, verdict| {
        report(m, last, 0, verdict);
        let notes = m.update_quorum(&c);
        quorum_notes.push(notes);
        dests(m, &c)
    };
    // Held down to quorum - hysteresis = 1.
    assert_eq!(step(&mut m, 1, Verdict::Fail), [(2, 1), (3, 1)]);
    assert_eq!(step(&mut m, 2, Verdict::Fail), [(3, 1)]);
    assert_eq!(step(&mut m, 3, Verdict::Fail), [(9, 1)]);
    // Regained only at quorum + hysteresis = 3.
    assert_eq!(step(&mut m, 1, Verdict::Pass(None)), [(9, 1)]);
    assert_eq!(step(&mut m, 2, Verdict::Pass(None)), [(9, 1)]);
    assert_eq!(
        step(&mut m, 3, Verdict::Pass(None)),
        [(1, 1), (2, 1), (3, 1)]
    );
    let expected: [&[&str]; 6] = [&[], &[], &["quorum down"], &[], &[], &["quorum up"]];
    assert_eq!(quorum_notes, expected);
    assert!(m.status(&c[0].addr, 0).unwrap().quorum);
}

#[test]
fn a_hysteresis_as_large_as_the_quorum_still_loses_it_with_no_server_left() {
    let c = configured(&[1, 1]);
    let mut m = Monitor::default();
    let mut h = health(vec![real_server(1, 1), real_server(2, 1)]);
    (h.quorum, h.hysteresis) = (1, 1);
    h.sorry_server = Some(std::net::IpAddr::V4(ip(9)));
    m.configure(&[h], 0);
    m.update_quorum(&c);
    report(&mut m, 1, 0, Verdict::Fail);
    m.update_quorum(&c);
    assert_eq!(
        dests(&mut m, &c),
        [(2, 1)],
        "one live server holds the quorum"
    );
    report(&mut m, 2, 0, Verdict::Fail);
    m.update_quorum(&c);
    assert_eq!(
        dests(&mut m, &c),
        [(9, 1)],
        "no live weight: the sorry server"
    );
}

#[test]
fn omega_runs_the_down_notifiers_at_stop() {
    let c = configured(&[1, 1]);
    let mut m = Monitor::default();
    let mut h = health(vec![real_server(1, 1), real_server(2, 1)]);
    h.quorum_down = Some("quorum down".into());
    m.configure(std::slice::from_ref(&h), 0);
    m.update_quorum(&c);
    report(&mut m, 2, 0, Verdict::Fail);
    assert!(m.stop().is_empty(), "without omega nothing runs at stop");
    h.omega = true;
    m.configure(&[h], 0);
    assert_eq!(m.stop(), ["down 1", "quorum down"]);
}

#[test]
fn reconfiguring_keeps_the_state_of_unchanged_checkers() {
    let c = configured(&[1, 1]);
    let mut m = Monitor::default();
    let h = health(vec![real_server(1, 1), real_server(2, 1)]);
    m.configure(std::slice::from_ref(&h), 0);
    report(&mut m, 1, 0, Verdict::Fail);
    report(&mut m, 2, 0, Verdict::Fail);
    let mut changed = h;
    changed.real_servers[1].checks[0].delay_loop = Duration::from_secs(2);
    m.configure(&[changed], 200 * SEC);
    // Server 1 is still down (since 100 s); server 2's checker changed and starts afresh.
    assert_eq!(dests(&mut m, &c), [(2, 1)]);
    let status = m.status(&c[0].addr, 300 * SEC).unwrap();
    assert_eq!(status.real_servers[0].since_secs, 200);
    assert_eq!(status.real_servers[1].since_secs, 100);
}
