//! Health checks end to end: xdpvsd's TCP_CHECKs take a stopped real server out of rotation
//! within keepalived's bound and put it back within one delay_loop; inhibit_on_failure keeps
//! it at weight 0; a lost quorum hands the service to the sorry server; HTTP_GET judges the
//! answer's status; MISC_CHECK with misc_dynamic sets the weights.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_userspace::listing::{Listing, RealServerHealthStatus};
use xdpvs_testbed::{
    cluster::{Cluster, split, tcp_service, vip, wait_until},
    servers::{HttpClient, http_get},
    topology::{IFACE, real_server_ip},
};

/// keepalived's timing of these tests' checkers, in seconds.
const DELAY_LOOP: u64 = 1;
const CONNECT_TIMEOUT: u64 = 1;
const RETRY: u64 = 1;
const DELAY_BEFORE_RETRY: u64 = 1;

/// The longest time a stopped server stays in rotation: the delay_loop + connect_timeout
/// x retry + delay_before_retry, counting the first attempt as keepalived does (retry + 1
/// attempts), plus a second for the daemon and a loaded machine.
fn out_within() -> Duration {
    Duration::from_secs(DELAY_LOOP + CONNECT_TIMEOUT * (RETRY + 1) + DELAY_BEFORE_RETRY * RETRY + 1)
}

/// Back within one delay_loop, plus the same second.
fn back_within() -> Duration {
    Duration::from_secs(DELAY_LOOP + 1)
}

/// A TCP_CHECK table with this file's timing and `connect_timeout`.
fn tcp_check(connect_timeout: u64) -> String {
    format!(
        "[[service.real_server.health_check]]\ntype = \"TCP_CHECK\"\ndelay_loop = {DELAY_LOOP}\n\
         connect_timeout = {connect_timeout}\nretry = {RETRY}\n\
         delay_before_retry = {DELAY_BEFORE_RETRY}\nwarmup = 0\n"
    )
}

/// `tcp_service` (rr) with `server(i)`'s lines, its checker among them, in real server i's table.
fn checked_service(
    weights: &[u32],
    service_extra: &str,
    server: impl Fn(usize) -> String,
) -> String {
    checked_service_of("rr", weights, service_extra, server)
}

/// [`checked_service`] with `scheduler`.
fn checked_service_of(
    scheduler: &str,
    weights: &[u32],
    service_extra: &str,
    server: impl Fn(usize) -> String,
) -> String {
    let plain = tcp_service(scheduler, weights, service_extra);
    let mut out = String::new();
    for (i, part) in plain.split("[[service.real_server]]\n").enumerate() {
        if i == 0 {
            out += part;
            continue;
        }
        out += "[[service.real_server]]\n";
        out += part;
        out += &server(i - 1);
    }
    out
}

/// The listed real servers' last octets.
fn listed(l: &Listing) -> Vec<u8> {
    l.services[0]
        .dests
        .iter()
        .map(|d| match d.addr {
            IpAddr::V4(a) => a.octets()[3],
            IpAddr::V6(a) => a.octets()[15],
        })
        .collect()
}

fn health_of(l: &Listing, i: usize) -> RealServerHealthStatus {
    let h = l.services[0].health.as_ref().expect("a health field");
    h.real_servers
        .iter()
        .find(|r| r.addr == real_server_ip(i))
        .expect("a checked real server")
        .clone()
}

/// Names of the servers answering `n` new requests; a failed request fails the test.
fn answers(c: &Cluster, n: usize) -> Vec<String> {
    c.client(move || {
        (0..n)
            .map(|i| {
                let body = http_get(vip(80)).unwrap_or_else(|e| panic!("request {i}: {e:#}"));
                split(&body).0
            })
            .collect()
    })
}

fn wait_listed(c: &Cluster, want: &[u8], within: Duration) -> Duration {
    let start = Instant::now();
    assert!(
        wait_until(within + Duration::from_secs(10), || {
            listed(&c.daemon.listing().unwrap()) == want
        }),
        "never listed {want:?}: {:?}\n{}",
        c.daemon.listing().unwrap(),
        c.daemon.log()
    );
    start.elapsed()
}

#[test]
fn a_stopped_server_leaves_in_time_comes_back_and_a_hanging_one_delays_nobody() {
    // rs3's attempts may take 5 s each.
    let config = checked_service(&[1, 1, 1], "", |i| {
        tcp_check(if i == 2 { 5 } else { CONNECT_TIMEOUT })
    });
    let mut c = Cluster::start("health", 3, &config).unwrap();
    c.daemon.wait_resolved().unwrap();
    let mut conns: Vec<HttpClient> = c.client(|| {
        (0..3)
            .map(|_| HttpClient::connect(vip(80)).unwrap())
            .collect()
    });
    let homes: Vec<String> = conns
        .iter_mut()
        .map(|h| split(&h.get().unwrap()).0)
        .collect();
    assert_eq!(homes, ["rs1", "rs2", "rs3"]);

    // rs2's service stops: out within the bound, with a log line naming the checker's reason.
    c.stop_real_server(1);
    let took = wait_listed(&c, &[21, 23], out_within());
    assert!(took <= out_within(), "rs2 left after {took:?}");
    let rs2 = health_of(&c.daemon.listing().unwrap(), 1);
    assert!(!rs2.up && rs2.transitions == 1, "{rs2:?}");
    assert!(rs2.reason.contains("TCP_CHECK failed 2 times"), "{rs2:?}");
    let log = c.daemon.log();
    let line = "real server 10.77.0.22 of TCP 10.77.0.100:80 is DOWN: TCP_CHECK failed 2 times: connect to 10.77.0.22:80";
    assert_eq!(log.matches(line).count(), 1, "{log}");
    // No new request reaches it, and none fails.
    let names = answers(&c, 12);
    assert!(names.iter().all(|n| n == "rs1" || n == "rs3"), "{names:?}");
    // Removal reschedules its flows (IPVS's expire_nodest_conn): rs2's connection breaks,
    // the others' stay.
    assert!(
        conns[1].get().is_err(),
        "a removed server's flow still answered"
    );
    assert_eq!(split(&conns[0].get().unwrap()).0, "rs1");
    assert_eq!(split(&conns[2].get().unwrap()).0, "rs3");

    // It starts again: back within one delay_loop, and it gets requests again.
    c.start_real_server(1).unwrap();
    let took = wait_listed(&c, &[21, 22, 23], back_within());
    assert!(took <= back_within(), "rs2 came back after {took:?}");
    assert!(answers(&c, 6).iter().any(|n| n == "rs2"));
    assert!(health_of(&c.daemon.listing().unwrap(), 1).up);

    // rs3 hangs (its link is down: every attempt waits the whole 5 s connect_timeout) while
    // rs1 stops: rs1 still leaves within its own bound, and the control socket answers at once.
    c.topo.real_servers[2]
        .ip(&["link", "set", IFACE, "down"])
        .unwrap();
    c.stop_real_server(0);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    assert!(wait_until(out_within() + Duration::from_secs(10), || {
        let asked = Instant::now();
        let l = c.daemon.listing().unwrap();
        slowest = slowest.max(asked.elapsed());
        !listed(&l).contains(&21)
    }));
    assert!(
        start.elapsed() <= out_within(),
        "rs1 left after {:?}",
        start.elapsed()
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a listing took {slowest:?}"
    );
    // rs3 leaves too, after its own two 5 s attempts.
    wait_listed(&c, &[22], Duration::from_secs(14));
    assert!(answers(&c, 4).iter().all(|n| n == "rs2"));
}

#[test]
fn inhibit_on_failure_keeps_the_server_listed_at_weight_0_with_its_flows() {
    // rs1's notifiers leave a file that says which ran last.
    let notified = std::env::temp_dir().join(format!("xdpvs-notify-{}", std::process::id()));
    let _ = std::fs::remove_file(&notified);
    let config = checked_service(&[2, 1], "", |i| {
        let rs1 = format!(
            "inhibit_on_failure = true\nnotify_up = \"echo up > {0}\"\nnotify_down = \"echo down > {0}\"\n",
            notified.display()
        );
        let own = if i == 0 { rs1 } else { String::new() };
        own + &tcp_check(CONNECT_TIMEOUT)
    });
    let ran = |what: &str| {
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&notified).is_ok_and(|s| s.trim() == what)
        })
    };
    let mut c = Cluster::start("inhibit", 2, &config).unwrap();
    c.daemon.wait_resolved().unwrap();
    let mut conn = c.client(|| HttpClient::connect(vip(80)).unwrap());
    assert_eq!(split(&conn.get().unwrap()).0, "rs1");

    c.stop_real_server(0);
    let weight_0 = || c.daemon.listing().unwrap().services[0].dests[0].weight == 0;
    assert!(wait_until(out_within(), weight_0), "{}", c.daemon.log());
    let text = String::from_utf8(c.daemon.adm(&["-Ln"]).unwrap().stdout).unwrap();
    assert!(
        text.contains("  -> 10.77.0.21:80                Route   0"),
        "{text}"
    );
    assert!(!health_of(&c.daemon.listing().unwrap(), 0).up);
    assert!(ran("down"), "notify_down did not run");
    // New requests go to rs2; rs1's accepted connection keeps its flow (weight 0 drains).
    assert!(answers(&c, 6).iter().all(|n| n == "rs2"));
    assert_eq!(split(&conn.get().unwrap()).0, "rs1");

    c.start_real_server(0).unwrap();
    let weight_2 = || c.daemon.listing().unwrap().services[0].dests[0].weight == 2;
    assert!(wait_until(back_within(), weight_2), "{}", c.daemon.log());
    assert!(ran("up"), "notify_up did not run");
    let _ = std::fs::remove_file(&notified);
}

#[test]
fn a_lost_quorum_hands_the_service_to_the_sorry_server_and_omega_notifies_at_stop() {
    // rs1 and rs2 serve with quorum 2; rs3 is the sorry server. With omega, stopping xdpvsd
    // runs quorum_down (as the up servers' notify_down).
    let stopped = std::env::temp_dir().join(format!("xdpvs-omega-{}", std::process::id()));
    let _ = std::fs::remove_file(&stopped);
    let quorum = format!(
        "quorum = 2\nsorry_server = \"{}\"\nomega = true\nquorum_down = \"echo $$ >> {}\"\n",
        real_server_ip(2),
        stopped.display()
    );
    let config = checked_service(&[1, 1], &quorum, |_| tcp_check(CONNECT_TIMEOUT));
    let mut c = Cluster::start("quorum", 3, &config).unwrap();
    c.daemon.wait_resolved().unwrap();
    assert!(
        c.daemon.listing().unwrap().services[0]
            .health
            .as_ref()
            .unwrap()
            .quorum
    );

    c.stop_real_server(0);
    wait_listed(&c, &[23], out_within());
    c.daemon.wait_resolved().unwrap();
    assert!(answers(&c, 4).iter().all(|n| n == "rs3"));
    let l = c.daemon.listing().unwrap();
    assert!(!l.services[0].health.as_ref().unwrap().quorum);
    assert!(
        c.daemon
            .log()
            .contains("service TCP 10.77.0.100:80: quorum lost")
    );

    c.start_real_server(0).unwrap();
    wait_listed(&c, &[21, 22], back_within());
    let names = answers(&c, 4);
    assert!(names.iter().all(|n| n == "rs1" || n == "rs2"), "{names:?}");

    // quorum_down ran once when the quorum was lost, and once more at stop.
    let runs = || std::fs::read_to_string(&stopped).map_or(0, |s| s.lines().count());
    assert!(
        wait_until(Duration::from_secs(5), || runs() == 1),
        "{}",
        runs()
    );
    assert!(c.daemon.stop().unwrap().success());
    assert!(
        wait_until(Duration::from_secs(5), || runs() == 2),
        "{}",
        runs()
    );
    let _ = std::fs::remove_file(&stopped);
}

#[test]
fn a_reload_restarts_only_the_checkers_that_changed() {
    let config = checked_service(&[1, 1], "", |_| tcp_check(CONNECT_TIMEOUT));
    let c = Cluster::start("hreload", 2, &config).unwrap();
    c.daemon.wait_resolved().unwrap();
    // rs1's checker now probes port 81, where nothing listens: rs1 goes down; rs2's checker is
    // unchanged and keeps its state.
    let probing_81 = checked_service(&[1, 1], "", |i| {
        let port = if i == 0 { "connect_port = 81\n" } else { "" };
        tcp_check(CONNECT_TIMEOUT) + port
    });
    c.daemon.write_config(&probing_81).unwrap();
    assert_eq!(c.daemon.adm(&["--reload"]).unwrap().status.code(), Some(0));
    wait_listed(&c, &[22], out_within());
    let rs1 = health_of(&c.daemon.listing().unwrap(), 0);
    assert!(rs1.reason.contains("connect to 10.77.0.21:81"), "{rs1:?}");
    let rs2 = health_of(&c.daemon.listing().unwrap(), 1);
    assert!(rs2.up && rs2.transitions == 0, "{rs2:?}");
    // And back.
    c.daemon.write_config(&config).unwrap();
    assert_eq!(c.daemon.adm(&["--reload"]).unwrap().status.code(), Some(0));
    wait_listed(&c, &[21, 22], back_within());
}

/// A checker of this file's timing: `kind` and its own lines.
fn check(kind: &str, lines: &str) -> String {
    format!(
        "[[service.real_server.health_check]]\ntype = \"{kind}\"\ndelay_loop = {DELAY_LOOP}\n\
         connect_timeout = {CONNECT_TIMEOUT}\nretry = {RETRY}\n\
         delay_before_retry = {DELAY_BEFORE_RETRY}\nwarmup = 0\n{lines}"
    )
}

#[test]
fn http_get_takes_out_a_server_whose_answer_is_not_an_accepted_status() {
    // The test servers answer every path with 200: rs2's checker accepts only 404.
    let url = |codes: &str| {
        check(
            "HTTP_GET",
            &format!(
                "[[service.real_server.health_check.url]]\npath = \"/health\"\nstatus_code = [{codes}]\n"
            ),
        )
    };
    let config = |rs2: &str| {
        let rs2 = rs2.to_owned();
        checked_service(&[1, 1], "", move |i| {
            if i == 1 {
                url(&rs2)
            } else {
                url("\"200-299\"")
            }
        })
    };
    let c = Cluster::start("hhttp", 2, &config("\"404\"")).unwrap();
    wait_listed(&c, &[21], out_within());
    let rs2 = health_of(&c.daemon.listing().unwrap(), 1);
    assert!(
        rs2.reason.contains("GET /health: status 200 not in 404"),
        "{rs2:?}"
    );
    c.daemon.wait_resolved().unwrap();
    assert!(answers(&c, 4).iter().all(|n| n == "rs1"));
    // Accepting 200 again brings it back at its next check.
    c.daemon.write_config(&config("\"200\"")).unwrap();
    assert_eq!(c.daemon.adm(&["--reload"]).unwrap().status.code(), Some(0));
    wait_listed(&c, &[21, 22], back_within());
    assert!(answers(&c, 4).iter().any(|n| n == "rs2"));
}

#[test]
fn misc_dynamic_sets_the_weights_and_changes_the_split() {
    // Each server's MISC_CHECK exits with the number in its file: 2 + the weight it asks for.
    let dir = std::env::temp_dir().join(format!("xdpvs-misc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |i: usize| dir.join(format!("rs{}", i + 1));
    let set = |i: usize, code: u32| std::fs::write(file(i), code.to_string()).unwrap();
    set(0, 5);
    set(1, 3);
    let config = checked_service_of("wrr", &[1, 1], "", |i| {
        check(
            "MISC_CHECK",
            &format!(
                "misc_path = \"sh -c 'exit $(cat {})'\"\nmisc_dynamic = true\n",
                file(i).display()
            ),
        )
    });
    let c = Cluster::start("hmisc", 2, &config).unwrap();
    let weights = |c: &Cluster| -> Vec<u32> {
        c.daemon.listing().unwrap().services[0]
            .dests
            .iter()
            .map(|d| d.weight)
            .collect()
    };
    assert!(
        wait_until(out_within(), || weights(&c) == [3, 1]),
        "{:?}\n{}",
        weights(&c),
        c.daemon.log()
    );
    c.daemon.wait_resolved().unwrap();
    let count = |names: &[String], name: &str| names.iter().filter(|n| *n == name).count();
    let names = answers(&c, 8);
    assert_eq!(
        (count(&names, "rs1"), count(&names, "rs2")),
        (6, 2),
        "{names:?}"
    );
    // rs1 now asks for weight 1: an even split.
    set(0, 3);
    assert!(
        wait_until(back_within() + Duration::from_secs(2), || weights(&c)
            == [1, 1]),
        "{:?}",
        weights(&c)
    );
    let names = answers(&c, 8);
    assert_eq!(
        (count(&names, "rs1"), count(&names, "rs2")),
        (4, 4),
        "{names:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
