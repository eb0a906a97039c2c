//! Schedulers, persistence and counts end to end, with three real servers: what a client in its
//! namespace observes through the VIP.

use std::{net::Ipv4Addr, time::Duration};

use lb_common::{maglev, sched::sh_bucket};
use lb_userspace::config::Config;
use xdpvs_testbed::{
    cluster::{Cluster, split, tcp_service, vip, wait_until},
    servers::{HttpClient, http_get},
    topology::real_server_name,
};

/// Names of the servers answering `n` fresh connections made one after the other.
fn answers(c: &Cluster, n: usize) -> Vec<String> {
    c.client(move || {
        (0..n)
            .map(|_| split(&http_get(vip(80)).unwrap()).0)
            .collect()
    })
}

fn names(pattern: &str) -> Vec<String> {
    pattern
        .bytes()
        .map(|b| real_server_name((b - b'a') as usize))
        .collect()
}

#[test]
fn rr_and_wrr_split_connections_exactly() {
    let c = Cluster::start("rr3", 3, &tcp_service("rr", &[1, 1, 1], "")).unwrap();
    c.daemon.wait_resolved().unwrap();
    assert_eq!(answers(&c, 12), names("abcabcabcabc"));
    drop(c);

    let c = Cluster::start("wrr3", 3, &tcp_service("wrr", &[3, 2, 1], "")).unwrap();
    c.daemon.wait_resolved().unwrap();
    // IPVS's interleaving for weights 3, 2, 1, three periods.
    assert_eq!(answers(&c, 18), names("aababcaababcaababc"));
    let l = c.daemon.listing().unwrap();
    let conns: Vec<u64> = l.services[0]
        .dests
        .iter()
        .map(|d| d.traffic.conns)
        .collect();
    assert_eq!(conns, [9, 6, 3]);
}

#[test]
fn connection_count_schedulers_avoid_the_server_holding_long_connections() {
    for sched in ["lc", "wlc", "sed", "nq"] {
        let c = Cluster::start(sched, 3, &tcp_service(sched, &[1, 1, 1], "")).unwrap();
        c.daemon.wait_resolved().unwrap();
        // A long-lived connection: with all servers idle, every scheduler starts at rs1.
        let (long, short) = c.client(|| {
            let mut long = HttpClient::connect(vip(80)).unwrap();
            let first = split(&long.get().unwrap()).0;
            let short: Vec<String> = (0..8)
                .map(|_| split(&http_get(vip(80)).unwrap()).0)
                .collect();
            // The long connection still works and kept its server.
            assert_eq!(split(&long.get().unwrap()).0, first);
            (first, short)
        });
        assert_eq!(long, "rs1", "{sched}: idle servers tie, the first wins");
        assert!(
            !short.contains(&long),
            "{sched}: {short:?} went to the busy {long}"
        );
        if matches!(sched, "lc" | "wlc") {
            // Closed connections count as inactive: the two idle servers share the load.
            assert!(
                short.contains(&"rs2".into()) && short.contains(&"rs3".into()),
                "{sched}: {short:?}"
            );
        }
    }
}

#[test]
fn sh_and_mh_keep_each_client_address_on_its_hashed_server() {
    for sched in ["sh", "mh"] {
        let config = tcp_service(sched, &[1, 1, 1], "");
        let c = Cluster::start(sched, 3, &config).unwrap();
        let clients: Vec<Ipv4Addr> = (11..=18).map(|i| Ipv4Addr::new(10, 77, 0, i)).collect();
        c.add_client_addresses(&clients).unwrap();
        c.daemon.wait_resolved().unwrap();
        // The table the daemon computes from this very configuration.
        let spec = &Config::parse(&config).unwrap().services[0];
        let table = spec.table().unwrap();
        let mut used = std::collections::BTreeSet::new();
        for src in clients {
            let got: Vec<String> = c.client(move || {
                (0..3)
                    .map(|_| {
                        split(
                            &HttpClient::connect_from(Some(src), vip(80))
                                .unwrap()
                                .get()
                                .unwrap(),
                        )
                        .0
                    })
                    .collect()
            });
            let bucket = match sched {
                "sh" => sh_bucket(u32::from(src), 0, 0),
                _ => maglev::client_hash(u32::from(src), 0) % table.len() as u32,
            };
            let expected = real_server_name(table[bucket as usize].unwrap() as usize);
            assert!(
                got.iter().all(|g| *g == expected),
                "{sched} {src}: {got:?}, expected {expected}"
            );
            used.insert(expected);
        }
        assert!(
            used.len() >= 2,
            "{sched}: eight clients all on one server: {used:?}"
        );
    }
}

#[test]
fn persistence_keeps_a_client_then_lets_it_move_after_the_timeout() {
    // rr would alternate; persistence holds the client. Closed connections (FIN_WAIT) expire
    // after 1 s, the template 2 s after its last connection.
    let config = format!(
        "[timeouts]\ntcpfin = 1\n{}",
        tcp_service("rr", &[1, 1, 1], "persistence_timeout = 2\n")
    );
    let c = Cluster::start("persist", 3, &config).unwrap();
    c.daemon.wait_resolved().unwrap();
    let first = answers(&c, 6);
    assert!(first.iter().all(|n| *n == first[0]), "{first:?}");
    let listing = c.daemon.adm(&["-Ln"]).unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("rr persistent 2\n"));
    // Any new connection within the timeout would refresh the template, as in IPVS: stay
    // quiet until the closed connections (FIN_WAIT, 1 s) and then the template (2 s after
    // them) have expired.
    let templates = |c: &Cluster| -> u32 {
        let l = c.daemon.listing().unwrap();
        l.services[0].dests.iter().map(|d| d.persistent).sum()
    };
    assert_eq!(templates(&c), 1);
    assert!(wait_until(Duration::from_secs(10), || templates(&c) == 0));
    let moved = answers(&c, 1).remove(0);
    assert_ne!(moved, first[0], "the client did not move after the timeout");
    // The new template holds the client again.
    assert!(answers(&c, 4).iter().all(|n| *n == moved));
}

#[test]
fn active_and_inactive_counts_follow_live_connections() {
    let config = format!(
        "[timeouts]\ntcpfin = 1\n{}",
        tcp_service("rr", &[1, 1, 1], "")
    );
    let c = Cluster::start("counts", 3, &config).unwrap();
    c.daemon.wait_resolved().unwrap();
    let open = c.client(|| {
        let mut open: Vec<HttpClient> = (0..3)
            .map(|_| HttpClient::connect(vip(80)).unwrap())
            .collect();
        for h in &mut open {
            h.get().unwrap();
        }
        for _ in 0..3 {
            http_get(vip(80)).unwrap();
        }
        open
    });
    let counts = |c: &Cluster| -> Vec<(u32, u32)> {
        c.daemon.listing().unwrap().services[0]
            .dests
            .iter()
            .map(|d| (d.active, d.inactive))
            .collect()
    };
    assert_eq!(counts(&c), [(1, 1), (1, 1), (1, 1)]);
    // The closed ones expire (FIN_WAIT 1 s): only the open ones remain, and nothing drifts.
    assert!(
        wait_until(Duration::from_secs(10), || counts(&c)
            == [(1, 0), (1, 0), (1, 0)]),
        "{:?}",
        counts(&c)
    );
    drop(open);
    assert!(
        wait_until(Duration::from_secs(10), || counts(&c)
            == [(0, 0), (0, 0), (0, 0)]),
        "{:?}",
        counts(&c)
    );
}

#[test]
fn set_changes_timeouts_and_expiry_follows() {
    let c = Cluster::start("set", 3, &tcp_service("rr", &[1, 1, 1], "")).unwrap();
    c.daemon.wait_resolved().unwrap();
    let timeouts = |c: &Cluster| {
        String::from_utf8(c.daemon.adm(&["-L", "--timeout"]).unwrap().stdout).unwrap()
    };
    assert_eq!(timeouts(&c), "Timeout (tcp tcpfin udp): 900 120 300\n");
    assert_eq!(
        c.daemon.adm(&["--set", "1", "2"]).unwrap().status.code(),
        Some(2),
        "malformed"
    );
    assert_eq!(
        c.daemon
            .adm(&["--set", "0", "1", "0"])
            .unwrap()
            .status
            .code(),
        Some(0)
    );
    assert_eq!(timeouts(&c), "Timeout (tcp tcpfin udp): 900 1 300\n");
    // A closed connection (FIN_WAIT) now expires within about a second.
    answers(&c, 1);
    let inactive = |c: &Cluster| c.daemon.listing().unwrap().services[0].dests[0].inactive;
    assert_eq!(inactive(&c), 1);
    assert!(wait_until(Duration::from_secs(5), || inactive(&c) == 0));
}
