//! `cargo xtask demo`: a direct-routing cluster in namespaces, curled through its VIP, with a
//! health step: a real server is stopped, leaves the rotation and comes back.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    cluster::{Cluster, wait_until},
    topology::{self, VIP},
};

/// Set by SIGINT/SIGTERM so that the demo tears down before exiting.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// The demo's configuration: one TCP and one UDP service on the VIP, round robin; the TCP
/// service's real servers are health-checked every second (TCP_CHECK).
pub fn config(real_servers: usize) -> String {
    let mut c = String::new();
    for (proto, port) in [("tcp", 80), ("udp", 53)] {
        c += &format!(
            "[[service]]\nprotocol = \"{proto}\"\naddress = \"{VIP}:{port}\"\nscheduler = \"rr\"\n"
        );
        for i in 0..real_servers {
            c += &format!(
                "[[service.real_server]]\naddress = \"{}\"\n",
                topology::real_server_ip(i)
            );
            if proto == "tcp" {
                c += "[service.real_server.health_check]\ntype = \"TCP_CHECK\"\n\
                      delay_loop = 1\nconnect_timeout = 1\nretry = 1\ndelay_before_retry = 1\nwarmup = 0\n";
            }
        }
    }
    c
}

/// How long the health step waits for a change before it gives up.
const HEALTH_WAIT: Duration = Duration::from_secs(15);

/// Runs the demo; everything it made is removed when it returns, also on failure or Ctrl-C.
pub fn run() -> Result<()> {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    println!("== building the topology: client, director, 2 real servers on a bridge (namespaces)");
    println!("== starting the real servers' HTTP servers and xdpvsd on the director");
    let mut cluster = Cluster::start("demo", 2, &config(2))?;
    cluster.daemon.wait_resolved()?;
    curls(&cluster, 6)?;
    list(&cluster)?;

    println!("== health: stopping rs2's HTTP server; its TCP_CHECK fails and xdpvsd removes it");
    cluster.stop_real_server(1);
    let started = Instant::now();
    wait_for(&cluster, "rs2 to leave", |n| n == 1)?;
    println!(
        "rs2 left the rotation after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    print_transition(&cluster, "is DOWN");
    list(&cluster)?;
    curls(&cluster, 3)?;
    println!("== health: starting rs2's HTTP server again");
    cluster.start_real_server(1)?;
    let started = Instant::now();
    wait_for(&cluster, "rs2 to come back", |n| n == 2)?;
    println!("rs2 is back after {:.1} s", started.elapsed().as_secs_f64());
    print_transition(&cluster, "is UP");
    curls(&cluster, 4)?;
    list(&cluster)?;
    println!("== tearing down");
    drop(cluster);
    Ok(())
}

/// `n` curls through the VIP, each printed with the server that answered.
fn curls(cluster: &Cluster, n: usize) -> Result<()> {
    for i in 1..=n {
        if INTERRUPTED.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let out = cluster
            .topo
            .client
            .exec(
                "curl",
                &["-sS", "--max-time", "5", &format!("http://{VIP}/")],
            )
            .context("curl through the VIP")?;
        let body = String::from_utf8_lossy(&out.stdout);
        let mut words = body.split_whitespace();
        let (server, seen) = (words.next().unwrap_or("?"), words.next().unwrap_or("?"));
        println!(
            "curl #{i} http://{VIP}/ -> answered by {server} (which saw the client as {seen})"
        );
    }
    Ok(())
}

fn list(cluster: &Cluster) -> Result<()> {
    println!("== xdpvsadm -Ln");
    let out = cluster.daemon.adm(&["-Ln"])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// Waits until the TCP service lists a number of real servers that `done` accepts, and its
/// MACs are known.
fn wait_for(cluster: &Cluster, what: &str, done: impl Fn(usize) -> bool) -> Result<()> {
    let listed = || -> bool {
        !INTERRUPTED.load(Ordering::Relaxed)
            && cluster
                .daemon
                .listing()
                .is_ok_and(|l| done(l.services[0].dests.len()))
    };
    if !wait_until(HEALTH_WAIT, listed) || INTERRUPTED.load(Ordering::Relaxed) {
        bail!("gave up waiting for {what}");
    }
    cluster.daemon.wait_resolved()?;
    Ok(())
}

/// Prints xdpvsd's last log line about a real server that `is` in a state.
fn print_transition(cluster: &Cluster, is: &str) {
    let log = cluster.daemon.log();
    if let Some(line) = log.lines().rev().find(|l| l.contains(is)) {
        println!("xdpvsd's log: {line}");
    }
}
