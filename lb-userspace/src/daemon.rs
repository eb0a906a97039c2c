//! xdpvsd: loads and attaches the program, mirrors the configured services into its maps,
//! resolves real servers' MACs, expires idle flows and answers xdpvsadm.

use std::{
    collections::HashMap,
    fs,
    io::ErrorKind,
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use lb_common::{
    dest::{DEST_F_RESOLVED, Dest},
    flow::{Flow, FlowKey, PersistKey},
    state::Timeouts,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    signal::unix::{SignalKind, signal},
};

use crate::{
    config::Config,
    control::{Command, PROTOCOL_VERSION, Reply, Request, Response},
    dataplane::{DataPlane, monotonic_ns},
    iface,
    listing::{DestStatus, Listing, ServiceStatus},
    model::{Persistence, ServiceSpec},
    neigh,
    tables::TablePool,
};

/// How often neighbours are refreshed and idle flows expired.
const TICK: Duration = Duration::from_secs(1);
/// Every this many ticks every real server is probed, so that its neighbour entry stays fresh.
const REPROBE_TICKS: u32 = 30;

/// The daemon's settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Interface to attach to.
    pub interface: String,
    /// Services to install.
    pub services: Vec<ServiceSpec>,
    /// Where the maps are pinned.
    pub pin_dir: PathBuf,
    /// Control socket path.
    pub socket: PathBuf,
    /// Connection table size.
    pub max_flows: u32,
    /// Fall back to generic XDP when native fails.
    pub allow_generic: bool,
    /// Connection timeouts.
    pub timeouts: Timeouts,
}

impl Options {
    /// Settings from the command line and an optional configuration file.
    pub fn new(interface: Option<String>, config: Option<&Path>) -> Result<Self> {
        let config = config.map(Config::load).transpose()?;
        let interface = interface
            .or_else(|| config.as_ref().and_then(|c| c.interface.clone()))
            .context("no interface: give --interface IF or `interface` in the configuration")?;
        Ok(Self {
            interface,
            timeouts: config.as_ref().map(|c| c.timeouts).unwrap_or_default(),
            services: config.map(|c| c.services).unwrap_or_default(),
            pin_dir: crate::DEFAULT_PIN_DIR.into(),
            socket: crate::DEFAULT_SOCKET.into(),
            max_flows: lb_common::DEFAULT_MAX_FLOWS,
            allow_generic: true,
        })
    }
}

struct InstalledService {
    spec: ServiceSpec,
    id: u32,
    dest_ids: Vec<u32>,
}

/// The running daemon's state.
pub struct Daemon {
    dataplane: DataPlane,
    interface: String,
    max_flows: u32,
    services: Vec<InstalledService>,
    timeouts: Timeouts,
    ticks: u32,
    /// When each persistence template was last seen controlling a live flow (monotonic ns).
    template_in_use: HashMap<PersistKey, u64>,
    /// Regions of the bucket-table pool.
    tables: TablePool,
}

impl Daemon {
    fn new(dataplane: DataPlane, opts: &Options) -> Self {
        Self {
            dataplane,
            interface: opts.interface.clone(),
            max_flows: opts.max_flows,
            services: Vec::new(),
            timeouts: opts.timeouts,
            ticks: 0,
            template_in_use: HashMap::new(),
            tables: TablePool::default(),
        }
    }

    /// Writes the configured services into the maps and resolves what it can.
    fn install(&mut self, opts: &Options) -> Result<()> {
        let d = self;
        d.dataplane.set_director(iface::mac(&opts.interface)?)?;
        let wanted: Vec<_> = opts.services.iter().map(|s| s.addr.map_key()).collect();
        for stale in d
            .dataplane
            .service_keys()?
            .into_iter()
            .filter(|k| !wanted.contains(k))
        {
            d.dataplane.remove_service(&stale)?;
        }
        let neighbours = neigh::table(&d.interface);
        let mut next_dest = 0u32;
        for (id, spec) in opts.services.iter().enumerate() {
            let mut dest_ids = Vec::with_capacity(spec.dests.len());
            for ds in &spec.dests {
                let dest_id = next_dest;
                next_dest += 1;
                let generation = d.dataplane.claim_dest(dest_id)?;
                let mut dest = Dest {
                    addr: u32::from_ne_bytes(ds.addr.octets()),
                    weight: ds.weight,
                    generation,
                    u_threshold: ds.u_threshold,
                    l_threshold: ds.l_threshold,
                    ..Dest::default()
                };
                set_neighbour(&mut dest, neighbours.get(&ds.addr));
                d.dataplane.write_dest(dest_id, &dest)?;
                dest_ids.push(dest_id);
            }
            let table_offset = d
                .tables
                .alloc(spec.table_size())
                .with_context(|| format!("service {}: the table pool is full", spec.addr))?;
            let svc = spec.map_value(id as u32, table_offset);
            d.dataplane.write_service(
                spec.addr.map_key(),
                svc,
                &dest_ids,
                spec.table().as_deref(),
            )?;
            log::info!(
                "service {} ({}) with {} real servers",
                spec.addr,
                spec.scheduler,
                dest_ids.len()
            );
            d.services.push(InstalledService {
                spec: spec.clone(),
                id: id as u32,
                dest_ids,
            });
        }
        d.refresh_neighbours()
    }

    fn dest_ids(&self) -> impl Iterator<Item = (Ipv4Addr, u32)> + '_ {
        self.services.iter().flat_map(|s| {
            s.spec
                .dests
                .iter()
                .map(|d| d.addr)
                .zip(s.dest_ids.iter().copied())
        })
    }

    /// Picks up new and changed MACs; probes real servers whose MAC is unknown (and all of
    /// them now and then, so that their entries stay fresh).
    fn refresh_neighbours(&mut self) -> Result<()> {
        let table = neigh::table(&self.interface);
        let reprobe = self.ticks.is_multiple_of(REPROBE_TICKS);
        let ids: Vec<_> = self.dest_ids().collect();
        for (addr, id) in ids {
            let mut dest = self.dataplane.dest(id)?;
            let before = dest;
            set_neighbour(&mut dest, table.get(&addr));
            if dest != before {
                match table.get(&addr) {
                    Some(n) => log::info!("real server {addr} is at {}", neigh::format_mac(&n.mac)),
                    None => log::warn!("real server {addr}: MAC address unknown, not scheduled"),
                }
                self.dataplane.write_dest(id, &dest)?;
            }
            if !dest.is_resolved() || reprobe {
                neigh::probe(addr);
            }
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<()> {
        self.ticks = self.ticks.wrapping_add(1);
        self.refresh_neighbours()?;
        let now = monotonic_ns();
        let live = self.dataplane.expire(&self.timeouts, now)?;
        self.expire_templates(&live, now)
    }

    /// Removes persistence templates that control no live flow and have not for their
    /// service's timeout, as IPVS expires a template after its last connection.
    fn expire_templates(&mut self, live: &[(FlowKey, Flow)], now: u64) -> Result<()> {
        let persistence: HashMap<u32, Persistence> = self
            .services
            .iter()
            .filter_map(|s| Some((s.id, s.spec.persistence?)))
            .collect();
        for (key, flow) in live {
            if let Some(p) = persistence.get(&flow.service) {
                let client = key.src_addr & u32::from_ne_bytes(p.netmask.octets());
                self.template_in_use.insert(
                    PersistKey {
                        service: flow.service,
                        client,
                    },
                    now,
                );
            }
        }
        for (key, t) in self.dataplane.templates()? {
            let last = t
                .last_used_ns
                .max(self.template_in_use.get(&key).copied().unwrap_or(0));
            let timeout = persistence
                .get(&key.service)
                .map_or(0, |p| u64::from(p.timeout) * 1_000_000_000);
            if now.saturating_sub(last) > timeout {
                self.dataplane.remove_template(&key)?;
                self.template_in_use.remove(&key);
            }
        }
        Ok(())
    }

    /// The listing xdpvsadm prints.
    pub fn listing(&self) -> Result<Listing> {
        let mut services = Vec::with_capacity(self.services.len());
        for s in &self.services {
            let mut dests = Vec::with_capacity(s.dest_ids.len());
            for (spec, id) in s.spec.dests.iter().zip(&s.dest_ids) {
                let dest = self.dataplane.dest(*id)?;
                let conns = self.dataplane.conns(*id)?;
                dests.push(DestStatus {
                    addr: spec.addr,
                    port: s.spec.addr.port,
                    weight: dest.weight,
                    active: conns.active,
                    inactive: conns.inactive,
                    mac: dest.is_resolved().then(|| neigh::format_mac(&dest.mac)),
                    traffic: self.dataplane.dest_traffic(*id)?.into(),
                });
            }
            services.push(ServiceStatus {
                addr: s.spec.addr,
                scheduler: s.spec.scheduler.clone(),
                flags: s.spec.flags,
                persistence: s.spec.persistence,
                dests,
                traffic: self.dataplane.service_traffic(s.id)?.into(),
            });
        }
        let counters = self
            .dataplane
            .globals()?
            .into_iter()
            .map(|(g, v)| (g.name().to_owned(), v))
            .collect();
        Ok(Listing {
            flow_table_size: self.max_flows,
            services,
            counters,
        })
    }

    fn timeouts_reply(&self) -> Reply {
        use lb_common::state::ConnState::{Established, FinWait, Udp};
        Reply::Timeouts([Established, FinWait, Udp].map(|s| self.timeouts.of(s)))
    }

    fn handle(&mut self, request: &str) -> Response {
        let result = match serde_json::from_str::<Request>(request) {
            Err(e) => Err(format!("malformed request: {e}")),
            Ok(r) if r.version != PROTOCOL_VERSION => Err(format!(
                "protocol version {} not supported (daemon speaks {PROTOCOL_VERSION})",
                r.version
            )),
            Ok(r) => match r.command {
                Command::List => self
                    .listing()
                    .map(Reply::Listing)
                    .map_err(|e| format!("{e:#}")),
                Command::Timeouts => Ok(self.timeouts_reply()),
                Command::SetTimeouts { tcp, tcpfin, udp } => {
                    self.timeouts.set(tcp, tcpfin, udp);
                    log::info!("timeouts now tcp {tcp} tcpfin {tcpfin} udp {udp} (0 kept)");
                    Ok(self.timeouts_reply())
                }
            },
        };
        Response {
            version: PROTOCOL_VERSION,
            result,
        }
    }
}

fn set_neighbour(dest: &mut Dest, n: Option<&neigh::Neighbour>) {
    match n {
        Some(n) => {
            dest.mac = n.mac;
            dest.flags |= DEST_F_RESOLVED;
        }
        None => dest.flags &= !DEST_F_RESOLVED,
    }
}

/// Binds the control socket with mode 0600, refusing to steal one a live daemon holds.
fn bind_socket(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("another xdpvsd is already listening on {}", path.display());
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            return Err(e).context("removing a stale socket");
        }
        _ => {}
    }
    // SAFETY: umask only changes the mode of files created meanwhile.
    let old = unsafe { libc::umask(0o077) };
    let listener = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = listener.with_context(|| format!("binding {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn serve_one(daemon: &mut Daemon, stream: UnixStream) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(read).read_line(&mut line),
    )
    .await??;
    let mut answer = serde_json::to_string(&daemon.handle(&line))?;
    answer.push('\n');
    write.write_all(answer.as_bytes()).await?;
    Ok(())
}

/// Runs the daemon until SIGINT or SIGTERM; then detaches and removes its pins and socket.
pub async fn run(opts: Options) -> Result<()> {
    if !iface::is_root() {
        bail!("Permission denied (you must be root)");
    }
    iface::index(&opts.interface)?;
    let listener = bind_socket(&opts.socket)?;
    let dataplane = DataPlane::load(Some(&opts.pin_dir), opts.max_flows);
    let result = match dataplane {
        Ok(dp) => serve(dp, &opts, listener).await,
        Err(e) => Err(e),
    };
    let _ = fs::remove_file(&opts.socket);
    result
}

async fn serve(dataplane: DataPlane, opts: &Options, listener: UnixListener) -> Result<()> {
    let mut daemon = Daemon::new(dataplane, opts);
    let attached = daemon
        .install(opts)
        .and_then(|()| daemon.dataplane.attach(&opts.interface, opts.allow_generic));
    let mode = match attached {
        Ok(m) => m,
        Err(e) => {
            // Nothing stays attached, and the half-written maps are not left pinned.
            daemon.dataplane.unpin();
            return Err(e);
        }
    };
    log::info!(
        "attached to {} ({mode:?} XDP); control socket {}",
        opts.interface,
        opts.socket.display()
    );
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut ticker = tokio::time::interval(TICK);
    let outcome = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = ticker.tick() => {
                if let Err(e) = daemon.tick() {
                    log::error!("periodic work failed: {e:#}");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Err(e) = serve_one(&mut daemon, stream).await {
                        log::warn!("control request failed: {e:#}");
                    }
                }
                Err(e) => log::warn!("accepting a control connection: {e}"),
            },
        }
    };
    log::info!("detaching from {}", opts.interface);
    daemon.dataplane.detach()?;
    daemon.dataplane.unpin();
    outcome
}
