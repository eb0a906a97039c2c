//! `cargo xtask demo`: a direct-routing cluster in namespaces, curled through its VIP.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

use crate::{
    cluster::Cluster,
    topology::{self, VIP},
};

/// Set by SIGINT/SIGTERM so that the demo tears down before exiting.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// The demo's configuration: one TCP and one UDP service on the VIP, round robin.
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
        }
    }
    c
}

/// Runs the demo; everything it made is removed when it returns, also on failure or Ctrl-C.
pub fn run() -> Result<()> {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    println!("== building the topology: client, director, 2 real servers on a bridge (namespaces)");
    println!("== starting the real servers' HTTP servers and xdpvsd on the director");
    let cluster = Cluster::start("demo", 2, &config(2))?;
    let (topo, daemon) = (&cluster.topo, &cluster.daemon);
    daemon.wait_resolved()?;
    for i in 1..=6 {
        if INTERRUPTED.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let out = topo
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
    println!("== xdpvsadm -Ln");
    let out = daemon.adm(&["-Ln"])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!("== tearing down");
    drop(cluster);
    Ok(())
}
