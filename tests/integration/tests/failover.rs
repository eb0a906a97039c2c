//! Director failover with the real keepalived: two directors run xdpvsd with the same services,
//! keepalived (VRRP only, `keepalived -P`, configured by `xdpvsadm ha-setup`) moves the VIP,
//! and xdpvsd follows it through `notify_fifo` and reports its health through `track_file`.
//! With mh both directors send a flow to the same real server, so connections opened through
//! the master keep working through the backup and back: after keepalived is killed, the
//! interface goes down, every real server of a service is taken out, and xdpvsd stops.
//! With rr and wlc the new director schedules a mid-stream segment anew; the test reports how
//! many of those connections survive.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_userspace::ha::Role;
use xdpvs_testbed::{
    cluster::{split, tcp_service, vip, wait_until},
    daemon::{Daemon, default_bin_dir},
    keepalived::Keepalived,
    netns::{Netns, unique_name},
    servers::{self, HttpClient, NamedServers},
    topology::{
        DIRECTOR_MAC, DIRECTOR2_MAC, IFACE, Topology, VIP, real_server_ip, real_server_name,
    },
};

/// `virtual_router_id` of the pair.
const ROUTER_ID: u8 = 77;
/// Priorities of the first and second director.
const PRIORITY: [u8; 2] = [100, 90];
/// MACs of the first and second director.
const MAC: [&str; 2] = [DIRECTOR_MAC, DIRECTOR2_MAC];
/// How long any one VRRP transition may take (advert_int 1: about 3.6 s at most).
const TRANSITION: Duration = Duration::from_secs(10);

/// Services: VIP:80 mh (with mh-port, so one client's connections spread), VIP:8080 rr and
/// VIP:8081 wlc, each over three real servers.
fn config() -> String {
    let weights = [1, 1, 1];
    let on = |port: u16, text: String| text.replace(":80\"", &format!(":{port}\""));
    tcp_service("mh", &weights, "sched_flags = [\"mh-port\"]\n")
        + &on(8080, tcp_service("rr", &weights, ""))
        + &on(8081, tcp_service("wlc", &weights, ""))
}

/// Held connections: each with the real server that answered on it first.
struct Held {
    label: &'static str,
    conns: Vec<(HttpClient, String)>,
}

impl Held {
    fn open(pair: &Pair, label: &'static str, port: u16, n: usize) -> Self {
        let conns = pair
            .topo
            .client
            .enter(move || {
                (0..n)
                    .map(|_| {
                        let mut c = HttpClient::connect(vip(port)).unwrap();
                        let home = split(&c.get().unwrap()).0;
                        (c, home)
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap();
        Self { label, conns }
    }

    /// One request on each connection: how many were answered by their own real server.
    /// Broken connections are dropped. The requests go in the reverse order of the
    /// connections' opening, so that a scheduler starting afresh on the other director does
    /// not replay the master's choices by chance (rr and wlc would).
    fn survivors(&mut self) -> usize {
        let before = self.conns.len();
        let mut moved = 0;
        self.conns.reverse();
        self.conns.retain_mut(|(c, home)| match c.get() {
            Ok(answer) if split(&answer).0 == *home => true,
            Ok(_) => {
                moved += 1;
                false
            }
            Err(_) => false,
        });
        eprintln!(
            "  {}: {} of {before} kept their real server ({moved} answered by another, {} broken)",
            self.label,
            self.conns.len(),
            before - self.conns.len() - moved
        );
        self.conns.len()
    }

    /// Asserts that at least 99 % of the connections kept working on their real server.
    fn assert_kept(&mut self, phase: &str) {
        let before = self.conns.len();
        let kept = self.survivors();
        assert!(
            kept * 100 >= before * 99,
            "{phase}: only {kept} of {before} {} connections survived",
            self.label
        );
    }
}

/// Two directors, each with xdpvsd and keepalived; stopped and removed on drop, keepalived
/// first.
struct Pair {
    keepalived: [Keepalived; 2],
    daemons: [Daemon; 2],
    _servers: Vec<NamedServers>,
    topo: Topology,
    timings: Vec<(String, Duration)>,
}

impl Pair {
    fn start() -> Self {
        let topo = Topology::pair("ha", 3).unwrap();
        let mut servers = servers::on_real_servers(&topo).unwrap();
        for (port, udp) in [(8080, 54), (8081, 55)] {
            for (i, ns) in topo.real_servers.iter().enumerate() {
                servers.push(
                    NamedServers::start(
                        ns,
                        &real_server_name(i),
                        port,
                        SocketAddr::from((VIP, udp)),
                    )
                    .unwrap(),
                );
            }
        }
        let keepalived =
            [0, 1].map(|i| Keepalived::paths(&unique_name(&format!("ka{i}"))).unwrap());
        let daemons = [0, 1].map(|i| {
            let mut d = Daemon::paths(&default_bin_dir(), &unique_name(&format!("ha{i}"))).unwrap();
            let ka = &keepalived[i];
            d.args = vec![
                "--notify-fifo".into(),
                ka.notify_fifo().display().to_string(),
                "--track-file".into(),
                ka.track_file().display().to_string(),
            ];
            d
        });
        let mut pair = Self {
            keepalived,
            daemons,
            _servers: servers,
            topo,
            timings: Vec::new(),
        };
        for i in 0..2 {
            pair.start_daemon(i);
        }
        pair
    }

    /// Starts xdpvsd on director `i` and waits until it resolved the real servers and told
    /// keepalived that it is healthy.
    fn start_daemon(&mut self, i: usize) {
        let ns = director(&self.topo, i);
        self.daemons[i].restart(ns, Some(&config())).unwrap();
        self.daemons[i].wait_resolved().unwrap();
        let track = self.keepalived[i].track_file();
        assert!(
            wait_until(Duration::from_secs(5), || std::fs::read_to_string(&track)
                .is_ok_and(|t| t == "0\n")),
            "xdpvsd did not write 0 to {}",
            track.display()
        );
    }

    /// What director `i`'s xdpvsd last wrote to its track file.
    fn track_file_of(&self, i: usize) -> String {
        let track = self.keepalived[i].track_file();
        std::fs::read_to_string(track).unwrap().trim().to_owned()
    }

    fn start_keepalived(&mut self, i: usize) {
        let setup = self.keepalived[i].setup(IFACE, VIP, ROUTER_ID, PRIORITY[i]);
        self.keepalived[i]
            .start(director(&self.topo, i), &setup)
            .unwrap();
    }

    fn role(&self, i: usize) -> Option<Role> {
        self.daemons[i].listing().ok()?.ha.map(|h| h.role)
    }

    /// Waits until director `i`'s xdpvsd reports `role`; records the time since `since`.
    fn await_role(&mut self, i: usize, role: Role, since: Instant, what: &str) {
        let seen = wait_until(TRANSITION, || self.role(i) == Some(role));
        let took = since.elapsed();
        assert!(
            seen,
            "{what}: director {} is {:?}, not {role:?}\nkeepalived 1:\n{}\nkeepalived 2:\n{}\nxdpvsd:\n{}",
            i + 1,
            self.role(i),
            self.keepalived[0].log(),
            self.keepalived[1].log(),
            self.daemons[i].log()
        );
        self.timings
            .push((format!("{what}: director {} {role:?}", i + 1), took));
    }

    /// Waits until the client sends to director `i` for the VIP (after its gratuitous ARP).
    fn await_client_at(&self, i: usize) {
        let at = || {
            self.topo
                .client
                .exec("ip", &["neigh", "show", &VIP.to_string()])
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(MAC[i]))
        };
        assert!(
            wait_until(Duration::from_secs(5), at),
            "the client does not reach the VIP at director {}",
            i + 1
        );
    }

    /// The master moved from director `from` to the other one after `action`.
    fn failover(&mut self, from: usize, what: &str, action: impl FnOnce(&mut Self)) {
        eprintln!("{what}");
        let to = 1 - from;
        let t = Instant::now();
        action(self);
        self.await_role(to, Role::Master, t, what);
        self.await_client_at(to);
    }

    fn set_link(&self, i: usize, state: &str) {
        director(&self.topo, i)
            .ip(&["link", "set", IFACE, state])
            .unwrap();
    }

    /// ActiveConn of VIP:`port` on director `i`.
    fn active(&self, i: usize, port: u16) -> u32 {
        let l = self.daemons[i].listing().unwrap();
        let s = l.services.iter().find(|s| s.addr.port == port).unwrap();
        s.dests.iter().map(|d| d.active).sum()
    }

    fn weight_all(&self, i: usize, port: u16, weight: &str) {
        for r in 0..3 {
            let out = self.daemons[i]
                .adm(&[
                    "-e",
                    "-t",
                    &format!("{VIP}:{port}"),
                    "-r",
                    &real_server_ip(r).to_string(),
                    "-w",
                    weight,
                ])
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    }
}

/// Director `i` (0 or 1) of the pair.
fn director(topo: &Topology, i: usize) -> &Netns {
    match i {
        0 => &topo.director,
        _ => topo.director2.as_ref().expect("a pair"),
    }
}

#[test]
fn mh_connections_survive_director_failover_with_keepalived() {
    let mut pair = Pair::start();
    let t = Instant::now();
    pair.start_keepalived(0);
    pair.await_role(0, Role::Master, t, "start");
    let t = Instant::now();
    pair.start_keepalived(1);
    pair.await_role(1, Role::Backup, t, "start");

    let mut mh = Held::open(&pair, "mh", 80, 50);
    let mut rr = Held::open(&pair, "rr", 8080, 20);
    let mut wlc = Held::open(&pair, "wlc", 8081, 20);
    pair.await_client_at(0);
    let homes: std::collections::BTreeSet<_> = mh.conns.iter().map(|(_, h)| h.clone()).collect();
    assert!(
        homes.len() > 1,
        "mh-port did not spread the connections: {homes:?}"
    );

    // keepalived dies on the master: its VRRP child gives the VIP up, the FIFO closes.
    pair.failover(0, "keepalived on director 1 killed", |p| {
        p.keepalived[0].kill().unwrap()
    });
    pair.await_role(0, Role::Unknown, Instant::now(), "FIFO closed");
    mh.assert_kept("after keepalived was killed");
    // Director 2 picked every connection up mid-stream.
    assert_eq!(pair.active(1, 80), 50);
    eprintln!(
        "  without a flow entry on director 2, rr and wlc schedule mid-stream segments anew:"
    );
    rr.survivors();
    wlc.survivors();

    pair.failover(1, "keepalived on director 1 back (preempt)", |p| {
        p.start_keepalived(0)
    });
    pair.await_role(1, Role::Backup, Instant::now(), "failback");
    mh.assert_kept("after keepalived came back");

    pair.failover(0, "director 1's interface down", |p| p.set_link(0, "down"));
    pair.await_role(0, Role::Fault, Instant::now(), "interface down");
    mh.assert_kept("after the interface went down");
    pair.failover(1, "director 1's interface up", |p| p.set_link(0, "up"));
    mh.assert_kept("after the interface came back");

    // No usable real server left in any service: xdpvsd writes 1, keepalived goes to FAULT.
    // (One service without real servers is not enough: its servers would be down for the peer
    // too.)
    pair.failover(0, "every real server out on director 1", |p| {
        p.weight_all(0, 8081, "0");
        p.weight_all(0, 8080, "0");
        assert_eq!(p.track_file_of(0), "0", "director 1 still serves VIP:80");
        p.weight_all(0, 80, "0")
    });
    pair.await_role(0, Role::Fault, Instant::now(), "track file 1");
    mh.assert_kept("after director 1 lost its real servers");
    pair.failover(1, "real servers back on director 1", |p| {
        for port in [80, 8080, 8081] {
            p.weight_all(0, port, "1")
        }
    });
    mh.assert_kept("after director 1's real servers came back");

    // xdpvsd stops: it writes 1 on its way out; the program forwards on meanwhile.
    pair.failover(0, "xdpvsd on director 1 stopped", |p| {
        assert!(p.daemons[0].stop().unwrap().success())
    });
    mh.assert_kept("after xdpvsd stopped");
    pair.failover(1, "xdpvsd on director 1 started again", |p| {
        p.start_daemon(0)
    });
    mh.assert_kept("after xdpvsd came back");

    eprintln!("timings (polled every 100 ms):");
    for (what, took) in &pair.timings {
        eprintln!("  {what}: {:.2} s", took.as_secs_f64());
    }
}
