//! Restarting xdpvsd (an upgrade) under load: the program stays attached and the flow table
//! intact, the new daemon swaps its program into the pinned link and adopts the tables, and
//! not one request fails. Also the Prometheus endpoint on the director's loopback.

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use xdpvs_testbed::{
    cluster::{Cluster, split, tcp_service, vip, wait_until},
    servers::{HttpClient, http_get},
};

fn xdp_prog_id(c: &Cluster) -> Option<u64> {
    let out = c
        .topo
        .director
        .exec(
            "ip",
            &["-j", "link", "show", "dev", xdpvs_testbed::topology::IFACE],
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["xdp"]["prog"]["id"]
        .as_u64()
        .or_else(|| v[0]["xdp"]["attached"][0]["prog"]["id"].as_u64())
}

fn scrape(c: &Cluster) -> String {
    c.topo
        .director
        .enter(|| {
            let mut s = TcpStream::connect("127.0.0.1:9469").unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        })
        .unwrap()
}

#[test]
fn restart_under_load_fails_no_request_and_keeps_connections() {
    let config = format!(
        "metrics = \"127.0.0.1:9469\"\n{}",
        tcp_service("rr", &[1, 1], "")
    );
    let mut c = Cluster::start("restart", 2, &config).unwrap();
    c.daemon.wait_resolved().unwrap();
    let mut held = c.client(|| HttpClient::connect(vip(80)).unwrap());
    let home = split(&held.get().unwrap()).0;
    let before = xdp_prog_id(&c).expect("attached");

    // A bounded loop of requests, each on a new connection, while the daemon restarts.
    let done = Arc::new(AtomicBool::new(false));
    let tried = Arc::new(AtomicU32::new(0));
    let (stop, count) = (done.clone(), tried.clone());
    let load = c.topo.client.spawn(move || {
        let (mut ok, mut failed) = (0u32, Vec::new());
        for i in 0..2000 {
            if stop.load(Ordering::Relaxed) && i >= 200 {
                break;
            }
            match http_get(vip(80)) {
                Ok(_) => ok += 1,
                Err(e) => failed.push(format!("{e:#}")),
            }
            count.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
        (ok, failed)
    });
    // Each phase lasts until the load has made `n` more requests in it.
    let requests_made = |n: u32| {
        let until = tried.load(Ordering::Relaxed) + n;
        assert!(
            wait_until(Duration::from_secs(20), || tried.load(Ordering::Relaxed)
                >= until),
            "the load stalled at {} requests",
            tried.load(Ordering::Relaxed)
        );
    };
    requests_made(50);
    let status = c.daemon.stop().unwrap();
    assert!(status.success(), "{status}");
    // No daemon: the program keeps forwarding on its own.
    requests_made(50);
    c.daemon.restart(&c.topo.director, Some(&config)).unwrap();
    requests_made(50);
    done.store(true, Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok >= 200, "only {ok} requests");

    // The held connection is still on its real server, counted as active by the new daemon;
    // the new daemon's program runs in the same link.
    assert_eq!(split(&held.get().unwrap()).0, home);
    let after = xdp_prog_id(&c).expect("still attached");
    assert_ne!(after, before, "the new daemon's program was not swapped in");
    let l = c.daemon.listing().unwrap();
    let active: u32 = l.services[0].dests.iter().map(|d| d.active).sum();
    assert_eq!(active, 1, "{l:?}");
    let conns: u64 = l.services[0].traffic.conns;
    assert!(
        conns > u64::from(ok),
        "counters restarted from zero: {conns}"
    );
    assert!(
        c.daemon.log().contains("adopted 1 services"),
        "{}",
        c.daemon.log()
    );

    // Prometheus text on the director's loopback, with the same figures.
    let metrics = scrape(&c);
    assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "xdpvs_service_connections_total{protocol=\"tcp\",vip=\"10.77.0.100\",port=\"80\"}",
            )
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= conns, "{line} vs {conns}");
}
