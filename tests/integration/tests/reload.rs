//! Reloading the configuration applies only the difference: flows of kept real servers and of
//! other services stay where they are.

use std::{net::UdpSocket, time::Duration};

use xdpvs_testbed::{
    cluster::{Cluster, split, tcp_service, vip},
    servers::{HttpClient, http_get, udp_ask_on},
    topology::VIP,
};

fn udp_service() -> String {
    let mut c =
        format!("[[service]]\nprotocol = \"udp\"\naddress = \"{VIP}:53\"\nscheduler = \"rr\"\n");
    for ip in ["10.77.0.21", "10.77.0.22"] {
        c += &format!("[[service.real_server]]\naddress = \"{ip}\"\n");
    }
    c
}

#[test]
fn reload_keeps_unchanged_flows_and_applies_new_weights() {
    let before = tcp_service("rr", &[1, 1], "") + &udp_service();
    let c = Cluster::start("reload", 3, &before).unwrap();
    c.daemon.wait_resolved().unwrap();
    let (mut conns, udp) = c.client(|| {
        let conns: Vec<HttpClient> = (0..2)
            .map(|_| HttpClient::connect(vip(80)).unwrap())
            .collect();
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        udp.connect(vip(53)).unwrap();
        (conns, udp)
    });
    let names: Vec<String> = conns
        .iter_mut()
        .map(|h| split(&h.get().unwrap()).0)
        .collect();
    assert_eq!(names, ["rs1", "rs2"]);
    let udp_home = split(&udp_ask_on(&udp).unwrap()).0;

    // A malformed file is refused whole: exit 255, nothing changes.
    let listing = c.daemon.adm(&["-Ln"]).unwrap().stdout;
    c.daemon
        .write_config("[[service]]\nprotocol = \"tcp\"\n")
        .unwrap();
    let out = c.daemon.adm(&["--reload"]).unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing field"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.daemon.adm(&["-Ln"]).unwrap().stdout, listing);

    // rs2 leaves, rs3 joins, rs1 gets weight 3 under wrr; the UDP service is unchanged.
    let mut after = tcp_service("wrr", &[3, 0, 1], "") + &udp_service();
    after = after.replacen(
        "address = \"10.77.0.22\"\nweight = 0\n",
        "address = \"10.77.0.23\"\nweight = 1\n",
        1,
    );
    after = after.replacen(
        "[[service.real_server]]\naddress = \"10.77.0.23\"\nweight = 1\n",
        "",
        1,
    );
    c.daemon.write_config(&after).unwrap();
    assert_eq!(c.daemon.adm(&["--reload"]).unwrap().status.code(), Some(0));
    let text = String::from_utf8(c.daemon.adm(&["-Ln"]).unwrap().stdout).unwrap();
    assert!(text.contains("TCP  10.77.0.100:80 wrr\n"), "{text}");
    assert!(
        text.contains("10.77.0.21:80                Route   3")
            && text.contains("10.77.0.23:80                Route   1"),
        "{text}"
    );
    assert!(!text.contains("10.77.0.22:80"), "{text}");

    // The kept server's connection and the other service's flow did not move.
    assert_eq!(split(&conns[0].get().unwrap()).0, "rs1");
    assert_eq!(split(&udp_ask_on(&udp).unwrap()).0, udp_home);
    // The removed server's connection is rescheduled to a server that does not know it.
    assert!(
        conns[1].get().is_err(),
        "a removed server's connection still answered"
    );
    // New connections follow wrr 3:1, once rs3's MAC is known (the rescheduled connection
    // above took one pick, so the period's phase is not fixed here).
    c.daemon.wait_resolved().unwrap();
    let fresh: Vec<String> = c.client(|| {
        (0..8)
            .map(|_| split(&http_get(vip(80)).unwrap()).0)
            .collect()
    });
    let rs3: Vec<usize> = fresh
        .iter()
        .enumerate()
        .filter(|(_, n)| *n == "rs3")
        .map(|(i, _)| i)
        .collect();
    assert!(fresh.iter().all(|n| n == "rs1" || n == "rs3"), "{fresh:?}");
    assert!(rs3.len() == 2 && rs3[1] - rs3[0] == 4, "{fresh:?}");
}
