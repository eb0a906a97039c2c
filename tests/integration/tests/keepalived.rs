//! xdpvsd started with the seed's keepalived.conf as is serves its virtual server on the seed's
//! own addresses, and a reload re-reads the file and applies the difference.

use std::{
    collections::BTreeSet,
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use xdpvs_testbed::{
    cluster::split,
    daemon::{Daemon, default_bin_dir},
    netns::unique_name,
    servers::{self, http_get},
    topology::{Addressing, Topology},
};

/// The seed's keepalived.conf, beside the checkout.
fn seed() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/keepalived/seed-master.conf");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The seed's network: VIP 172.20.1.100/16, real servers 172.20.1.10 and .11.
fn seed_addressing() -> Addressing {
    Addressing {
        prefix_len: 16,
        vip: Ipv4Addr::new(172, 20, 1, 100),
        client: Ipv4Addr::new(172, 20, 1, 50),
        director: Ipv4Addr::new(172, 20, 1, 2),
        real_servers: vec![Ipv4Addr::new(172, 20, 1, 10), Ipv4Addr::new(172, 20, 1, 11)],
    }
}

/// Who answers `n` new connections to the VIP, from the client.
fn answers(topo: &Topology, n: usize) -> Vec<String> {
    let vip = SocketAddr::from((topo.addressing.vip, 80));
    topo.client
        .enter(move || (0..n).map(|_| split(&http_get(vip).unwrap()).0).collect())
        .unwrap()
}

#[test]
fn the_seeds_keepalived_conf_serves_and_reloads() {
    let topo = Topology::build_on("kconf", seed_addressing()).unwrap();
    let _servers = servers::on_real_servers(&topo).unwrap();
    let mut daemon = Daemon::paths(&default_bin_dir(), &unique_name("kconf")).unwrap();
    let conf = std::env::temp_dir().join(format!("{}.conf", unique_name("kconf")));
    fs::write(&conf, seed()).unwrap();
    daemon.keepalived_conf = Some(conf.clone());
    daemon.restart(&topo.director, None).unwrap();
    let log = daemon.log();
    assert!(
        log.contains("declared again") && log.contains("vrrp_strict"),
        "{log}"
    );
    daemon.wait_resolved().unwrap();
    let text = String::from_utf8(daemon.adm(&["-Ln"]).unwrap().stdout).unwrap();
    assert!(text.contains("TCP  172.20.1.100:80 rr\n"), "{text}");

    // rr over the two merged declarations' real servers.
    let names = answers(&topo, 4);
    assert_eq!(
        names.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["rs1".to_string(), "rs2".to_string()]),
        "{names:?}"
    );
    assert_ne!(names[0], names[1], "{names:?}");

    // A file xdpvs cannot serve is refused whole, with its line and keyword.
    let rules = daemon.adm(&["-Sn"]).unwrap().stdout;
    fs::write(&conf, seed().replacen("lb_kind DR", "lb_kind NAT", 1)).unwrap();
    let out = daemon.adm(&["--reload"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(err.contains(":48: `lb_kind`: NAT forwarding"), "{err}");
    assert_eq!(daemon.adm(&["-Sn"]).unwrap().stdout, rules);

    // Without the second declaration, only 172.20.1.10 is left.
    let first = seed().split("# RS2").next().unwrap().to_owned();
    fs::write(&conf, first).unwrap();
    assert_eq!(daemon.adm(&["--reload"]).unwrap().status.code(), Some(0));
    let after = String::from_utf8(daemon.adm(&["-Ln"]).unwrap().stdout).unwrap();
    assert!(
        after.contains("172.20.1.10:80") && !after.contains("172.20.1.11:80"),
        "{after}"
    );
    assert_eq!(answers(&topo, 3), ["rs1", "rs1", "rs1"]);
    fs::remove_file(&conf).unwrap();
}

#[test]
fn check_prints_the_rules_and_warnings_or_the_error() {
    let conf = std::env::temp_dir().join(format!("{}.conf", unique_name("kconf-check")));
    let check = |text: &str| {
        fs::write(&conf, text).unwrap();
        std::process::Command::new(default_bin_dir().join("xdpvsd"))
            .arg("--check")
            .arg("--keepalived-conf")
            .arg(&conf)
            .output()
            .unwrap()
    };
    let out = check(&seed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-A -t 172.20.1.100:80 -s rr\n\
         -a -t 172.20.1.100:80 -r 172.20.1.10:80 -g -w 1\n\
         -a -t 172.20.1.100:80 -r 172.20.1.11:80 -g -w 1\n"
    );
    for keyword in [
        ":15: `vrrp_strict`",
        ":50: `nat_mask`",
        ":52: `persistence_timeout`",
        ":68: `nb_get_retry`",
        ":74: `virtual_server`: service TCP 172.20.1.100:80 declared again",
    ] {
        assert!(stderr.contains(keyword), "{keyword}: {stderr}");
    }
    let out = check(&seed().replace("lb_algo rr", "lb_algo wfo"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(":46: `lb_algo`: scheduler \"wfo\" not supported"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    fs::remove_file(&conf).unwrap();
}
