//! A whole test cluster: topology, named servers on every real server, and xdpvsd with a
//! configuration, plus helpers to talk to the VIP from the client.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Result;

use crate::{
    daemon::{Daemon, default_bin_dir},
    netns::unique_name,
    servers::{self, NamedServers},
    topology::{self, Topology, VIP},
};

/// A running cluster; everything is stopped and removed on drop.
pub struct Cluster {
    /// The daemon on the director.
    pub daemon: Daemon,
    /// The named servers of each real server, while they run.
    servers: Vec<Option<NamedServers>>,
    /// The namespaces.
    pub topo: Topology,
}

impl Cluster {
    /// Builds a topology with `n` real servers and starts xdpvsd with `config` (TOML).
    pub fn start(tag: &str, n: usize, config: &str) -> Result<Self> {
        Self::launch(tag, n, Some(config))
    }

    /// As [`Cluster::start`], with xdpvsd started with only `--interface`.
    pub fn unconfigured(tag: &str, n: usize) -> Result<Self> {
        Self::launch(tag, n, None)
    }

    fn launch(tag: &str, n: usize, config: Option<&str>) -> Result<Self> {
        let topo = Topology::build(tag, n)?;
        let servers = servers::on_real_servers(&topo)?;
        let daemon = Daemon::start(
            &default_bin_dir(),
            &topo.director,
            &unique_name(tag),
            config,
        )?;
        Ok(Self {
            daemon,
            servers: servers.into_iter().map(Some).collect(),
            topo,
        })
    }

    /// Stops real server `i`'s servers: its ports refuse connections from now on, while the
    /// connections it accepted are still served.
    pub fn stop_real_server(&mut self, i: usize) {
        self.servers[i] = None;
    }

    /// Starts real server `i`'s servers again.
    pub fn start_real_server(&mut self, i: usize) -> Result<()> {
        self.servers[i] = Some(servers::on_real_server(&self.topo, i)?);
        Ok(())
    }

    /// Runs `f` in the client's namespace.
    pub fn client<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.topo.client.enter(f).expect("client namespace")
    }

    /// Gives the client further addresses on its interface.
    pub fn add_client_addresses(&self, addrs: &[Ipv4Addr]) -> Result<()> {
        for a in addrs {
            self.topo
                .client
                .ip(&["addr", "add", &format!("{a}/24"), "dev", topology::IFACE])?;
        }
        Ok(())
    }
}

/// Polls `check` every 100 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The VIP at `port`.
pub fn vip(port: u16) -> SocketAddr {
    SocketAddr::from((VIP, port))
}

/// A named server's answer "rs1 10.77.0.10" split into ("rs1", "10.77.0.10").
pub fn split(answer: &str) -> (String, String) {
    let mut w = answer.split_whitespace();
    (
        w.next().unwrap_or_default().into(),
        w.next().unwrap_or_default().into(),
    )
}

/// A TCP service on VIP:80 over real servers 1..=weights.len() with the given weights, and
/// `extra` TOML lines in the service table.
pub fn tcp_service(scheduler: &str, weights: &[u32], extra: &str) -> String {
    let mut c = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}:80\"\nscheduler = \"{scheduler}\"\n{extra}"
    );
    for (i, w) in weights.iter().enumerate() {
        c += &format!(
            "[[service.real_server]]\naddress = \"{}\"\nweight = {w}\n",
            topology::real_server_ip(i)
        );
    }
    c
}
