//! xdpvsadm as an ipvsadm user drives it: a daemon started with only `--interface` configured
//! by an ipvsadm script, `-S | -R` round trips, exit codes and messages, counters, `-Lnc`,
//! `-Z`, and `rs-setup`.

use std::{process::Output, time::Duration};

use xdpvs_testbed::{
    cluster::{Cluster, split, vip, wait_until},
    daemon::default_bin_dir,
    netns::{Netns, unique_name},
    servers::{HttpClient, http_get},
    topology::{VIP, real_server_ip},
};

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim_end().to_owned()
}

/// Runs xdpvsadm and checks its exit code; the output.
fn adm(c: &Cluster, args: &str, code: i32) -> Output {
    let args: Vec<&str> = args.split_whitespace().collect();
    let out = c.daemon.adm(&args).unwrap();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    out
}

fn script(rs: &[usize]) -> String {
    let mut s = format!("-A -t {VIP}:80 -s rr\n");
    for i in rs {
        s += &format!("-a -t {VIP}:80 -r {} -g -w 1\n", real_server_ip(*i));
    }
    s
}

#[test]
fn an_ipvsadm_script_configures_the_daemon_and_save_restores_it() {
    let c = Cluster::unconfigured("adm", 2).unwrap();
    for line in script(&[0, 1]).lines() {
        adm(&c, line, 0);
    }
    adm(
        &c,
        &format!("-A -u {VIP}:53 -s sh -b sh-port -p 60 -M 255.255.255.0"),
        0,
    );
    adm(
        &c,
        &format!(
            "-a -u {VIP}:53 -r {}:53 -w 3 -x 100 -y 50",
            real_server_ip(1)
        ),
        0,
    );
    adm(
        &c,
        &format!("-e -u {VIP}:53 -r {} -w 2 -x 100 -y 50", real_server_ip(1)),
        0,
    );
    c.daemon.wait_resolved().unwrap();
    let names: Vec<String> = c.client(|| {
        (0..4)
            .map(|_| split(&http_get(vip(80)).unwrap()).0)
            .collect()
    });
    // IPVS keeps real servers newest first: rr starts at rs2, the last added.
    assert_eq!(names, ["rs2", "rs1", "rs2", "rs1"]);
    // The closed connections' FINs arrive: each then counts as inactive.
    let inactive = || -> u32 {
        let l = c.daemon.listing().unwrap();
        l.services
            .iter()
            .flat_map(|s| &s.dests)
            .map(|d| d.inactive)
            .sum()
    };
    assert!(wait_until(Duration::from_secs(5), || inactive() == 4));

    let saved = text(&adm(&c, "-S -n", 0));
    assert_eq!(
        saved,
        format!(
            "-A -t {VIP}:80 -s rr\n\
-a -t {VIP}:80 -r 10.77.0.21:80 -g -w 1\n\
-a -t {VIP}:80 -r 10.77.0.22:80 -g -w 1\n\
-A -u {VIP}:53 -s sh -p 60 -M 255.255.255.0 -b sh-port\n\
-a -u {VIP}:53 -r 10.77.0.22:53 -g -w 2 -x 100 -y 50\n"
        )
    );
    let listing = text(&adm(&c, "-Ln", 0));
    assert_eq!(
        listing.lines().skip(3).collect::<Vec<_>>(),
        [
            "TCP  10.77.0.100:80 rr",
            "  -> 10.77.0.21:80                Route   1      0          2         ",
            "  -> 10.77.0.22:80                Route   1      0          2         ",
            "UDP  10.77.0.100:53 sh (sh-port) persistent 60 mask 255.255.255.0",
            "  -> 10.77.0.22:53                Route   2      0          0         ",
        ]
    );

    // -C empties the table; -R of the saved text rebuilds exactly the same one.
    adm(&c, "-C", 0);
    assert_eq!(text(&adm(&c, "-Ln", 0)).lines().count(), 3);
    let out = c.daemon.adm_with_input(&["-R"], &saved).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(text(&adm(&c, "-S", 0)), saved);
    c.daemon.wait_resolved().unwrap();
    let again = c.client(|| split(&http_get(vip(80)).unwrap()).0);
    assert_eq!(
        again, "rs2",
        "the rebuilt rr service starts at its head, the last real server -R added"
    );
}

#[test]
fn the_locality_and_weight_order_schedulers_are_taken_listed_and_saved() {
    let c = Cluster::unconfigured("adm-sched", 2).unwrap();
    for line in script(&[0, 1]).lines() {
        adm(&c, line, 0);
    }
    let others = ["lblcr", "fo", "ovf", "twos"];
    for (port, name) in (81..).zip(others) {
        adm(&c, &format!("-A -t {VIP}:{port} -s {name}"), 0);
    }
    // lblc keeps every flow for one destination (here the VIP) on the server it cached.
    adm(&c, &format!("-E -t {VIP}:80 -s lblc"), 0);
    c.daemon.wait_resolved().unwrap();
    let names: Vec<String> = c.client(|| {
        (0..4)
            .map(|_| split(&http_get(vip(80)).unwrap()).0)
            .collect()
    });
    // The first pick is wlc's, whose tie goes to the head of the list: rs2, the newest.
    assert_eq!(names, ["rs2"; 4]);
    let listing = text(&adm(&c, "-Ln", 0));
    let services: Vec<&str> = listing.lines().filter(|l| l.starts_with("TCP")).collect();
    assert_eq!(
        services,
        [
            "TCP  10.77.0.100:80 lblc",
            "TCP  10.77.0.100:81 lblcr",
            "TCP  10.77.0.100:82 fo",
            "TCP  10.77.0.100:83 ovf",
            "TCP  10.77.0.100:84 twos",
        ]
    );
    let saved = text(&adm(&c, "-S -n", 0));
    for (port, name) in (80..).zip(["lblc"].into_iter().chain(others)) {
        assert!(
            saved.contains(&format!("-A -t {VIP}:{port} -s {name}\n")),
            "{saved}"
        );
    }
}

#[test]
fn refused_and_malformed_commands_exit_as_ipvsadm_and_change_nothing() {
    let c = Cluster::unconfigured("admerr", 1).unwrap();
    let input = script(&[0]);
    let out = c.daemon.adm_with_input(&["-R"], &input).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let before = text(&adm(&c, "-Ln", 0));
    let rs = real_server_ip(0);
    let cases = [
        (
            format!("-A -t {VIP}:80 -s wlc"),
            255,
            "Service already exists",
        ),
        (format!("-E -t {VIP}:81 -s wlc"), 255, "No such service"),
        (format!("-D -t {VIP}:81"), 255, "No such service"),
        (
            format!("-A -t {VIP}:81 -s fancy"),
            255,
            "Scheduler or persistence engine not found",
        ),
        (
            format!("-a -t {VIP}:81 -r {rs}"),
            255,
            "Service not defined",
        ),
        (
            format!("-a -t {VIP}:80 -r {rs}"),
            255,
            "Destination already exists",
        ),
        (
            format!("-d -t {VIP}:80 -r 10.77.0.99"),
            255,
            "No such destination",
        ),
        (
            format!("-e -t {VIP}:80 -r 10.77.0.99 -w 2"),
            255,
            "No such destination",
        ),
        (format!("-Z -t {VIP}:81"), 255, "No such service"),
        (
            format!("-a -t {VIP}:80 -r {rs} -w 2147483648"),
            2,
            "illegal weight specified",
        ),
        (
            format!("-A -t {VIP}"),
            2,
            "Zero port specified for non-persistent service",
        ),
        (format!("-A -t {VIP}:81 -D"), 2, "invalid option `-D'"),
        (
            "-a -s rr".into(),
            2,
            "You need to supply the 'service-address' option for the 'add-server' command",
        ),
        (
            format!("-a -t {VIP}:80 -r 10.77.0.30 -m"),
            255,
            "xdpvs forwards by direct routing (-g) only: --masquerading is not supported",
        ),
    ];
    for (args, code, message) in &cases {
        let out = adm(&c, args, *code);
        assert_eq!(stderr(&out), *message, "{args}");
    }
    // -R is one change: a refused or malformed line anywhere leaves the table as it was.
    let refused = format!("-A -t {VIP}:90\n-A -t {VIP}:80\n");
    let out = c.daemon.adm_with_input(&["-R"], &refused).unwrap();
    assert_eq!(
        (out.status.code(), stderr(&out).as_str()),
        (Some(255), "Service already exists")
    );
    let malformed = format!("-A -t {VIP}:90\n-a -t {VIP}:90 -r {rs} -w x\n");
    let out = c.daemon.adm_with_input(&["-R"], &malformed).unwrap();
    assert_eq!(
        (out.status.code(), stderr(&out).as_str()),
        (Some(2), "illegal weight specified")
    );
    assert_eq!(text(&adm(&c, "-Ln", 0)), before);
}

#[test]
fn stats_connections_and_zero() {
    let c = Cluster::unconfigured("admstat", 2).unwrap();
    // rs2 added first: newest first, as IPVS, rr starts at rs1.
    let out = c.daemon.adm_with_input(&["-R"], &script(&[1, 0])).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    c.daemon.wait_resolved().unwrap();
    let mut held = c.client(|| {
        (0..4).for_each(|_| drop(http_get(vip(80)).unwrap()));
        HttpClient::connect(vip(80)).unwrap()
    });
    let home = split(&held.get().unwrap()).0;
    assert_eq!(home, "rs1", "the fifth connection under rr");

    // --stats: 5 connections in all, 3 to rs1; every packet counted once per level.
    let stats = text(&adm(&c, "-Ln --stats", 0));
    let rows: Vec<Vec<u64>> = stats
        .lines()
        .skip(3)
        .map(|l| {
            l.split_whitespace()
                .skip_while(|w| !w.contains(':'))
                .skip(1)
                .map(|n| n.parse().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3, "{stats}");
    assert_eq!((rows[0][0], rows[1][0], rows[2][0]), (5, 3, 2), "{stats}");
    assert_eq!(rows[0][1], rows[1][1] + rows[2][1], "{stats}");
    assert!(
        rows[0][3] > 0 && rows[0][2] == 0 && rows[0][4] == 0,
        "{stats}"
    );

    // -Lnc lists the held connection as ESTABLISHED on rs1 with ipvsadm's columns.
    let conns = text(&adm(&c, "-Lnc", 0));
    assert!(
        conns.starts_with("IPVS connection entries\npro expire state       source             virtual            destination\n"),
        "{conns}"
    );
    let established: Vec<&str> = conns
        .lines()
        .filter(|l| l.contains("ESTABLISHED"))
        .collect();
    assert_eq!(established.len(), 1, "{conns}");
    let w: Vec<&str> = established[0].split_whitespace().collect();
    assert_eq!(w[0], "TCP");
    assert!(w[1].starts_with("14:") || w[1] == "15:00", "{conns}");
    assert!(w[3].starts_with("10.77.0.10:"), "{conns}");
    assert_eq!((w[4], w[5]), ("10.77.0.100:80", "10.77.0.21:80"));
    let pc = text(&adm(&c, "-Ln --persistent-conn", 0));
    assert!(
        pc.contains("Weight    PersistConn ActiveConn InActConn"),
        "{pc}"
    );
    assert!(
        pc.contains("  -> 10.77.0.21:80                1         0           1          "),
        "{pc}"
    );

    // -Z zeroes the counters, not the connections.
    adm(&c, &format!("-Z -t {VIP}:80"), 0);
    let zeroed = text(&adm(&c, "-Ln --stats", 0));
    assert!(
        zeroed
            .lines()
            .skip(3)
            .all(|l| l.split_whitespace().skip(2).all(|n| n == "0")),
        "{zeroed}"
    );
    assert_eq!(split(&held.get().unwrap()).0, "rs1");
    let stats = text(&adm(&c, "-Ln --stats --exact", 0));
    assert!(
        stats.lines().nth(3).unwrap().split_whitespace().nth(2) == Some("0"),
        "no new connection: {stats}"
    );
    assert!(text(&adm(&c, "-Ln --rate", 0)).contains("CPS    InPPS   OutPPS    InBPS   OutBPS"));
}

#[test]
fn rs_setup_prints_and_applies_the_real_server_settings() {
    let bin = default_bin_dir().join("xdpvsadm");
    let out = std::process::Command::new(&bin)
        .args(["rs-setup", "--vip", "10.77.9.1"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        lb_userspace::rs_setup::script("10.77.9.1".parse().unwrap())
    );
    let ns = Netns::create(unique_name("rssetup")).unwrap();
    let out = ns
        .command(bin.to_str().unwrap())
        .args(["rs-setup", "--vip", "10.77.9.1", "--apply"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let addrs = ns.exec("ip", &["-4", "addr", "show", "dev", "lo"]).unwrap();
    assert!(
        text(&addrs).contains("inet 10.77.9.1/32"),
        "{}",
        text(&addrs)
    );
    for (key, value) in lb_userspace::rs_setup::SYSCTLS {
        let got = ns.exec("sysctl", &["-n", key]).unwrap();
        assert_eq!(text(&got).trim(), value, "{key}");
    }
    let out = std::process::Command::new(&bin)
        .args(["rs-setup", "--vip", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
