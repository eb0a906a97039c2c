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
    tables::{IdPool, TablePool},
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
    /// The configuration file, re-read on SIGHUP and `xdpvsadm --reload`.
    pub config: Option<PathBuf>,
}

impl Options {
    /// Settings from the command line and an optional configuration file.
    pub fn new(interface: Option<String>, config: Option<&Path>) -> Result<Self> {
        let path = config.map(Path::to_owned);
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
            config: path,
        })
    }
}

struct InstalledService {
    spec: ServiceSpec,
    id: u32,
    dest_ids: Vec<u32>,
    /// Its region of the table pool (offset, size).
    table: (u32, u32),
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
    /// Regions replaced by a newer table, freed at the next tick (once no packet can still be
    /// reading them).
    retired_tables: Vec<(u32, u32)>,
    service_ids: IdPool,
    dest_ids: IdPool,
    /// The configuration file, for reloads.
    config: Option<PathBuf>,
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
            retired_tables: Vec::new(),
            service_ids: IdPool::new(lb_common::MAX_SERVICES),
            dest_ids: IdPool::new(lb_common::MAX_DESTS),
            config: opts.config.clone(),
        }
    }

    /// Sets the director's MAC, drops services a previous daemon left in pinned maps, and
    /// installs the configured services.
    fn install(&mut self, opts: &Options) -> Result<()> {
        self.dataplane.set_director(iface::mac(&opts.interface)?)?;
        let wanted: Vec<_> = opts.services.iter().map(|s| s.addr.map_key()).collect();
        for stale in self
            .dataplane
            .service_keys()?
            .into_iter()
            .filter(|k| !wanted.contains(k))
        {
            self.dataplane.remove_service(&stale)?;
        }
        self.apply(&opts.services)
    }

    /// Makes the maps hold `specs` (validated), changing only what differs: unchanged services
    /// are not touched, real servers kept in a changed service keep their slots (so their flows
    /// stay), removed ones are retired (their flows are rescheduled on their next packet).
    fn apply(&mut self, specs: &[ServiceSpec]) -> Result<()> {
        let mut old = std::mem::take(&mut self.services);
        for spec in specs {
            let prev = old
                .iter()
                .position(|o| o.spec.addr == spec.addr)
                .map(|i| old.remove(i));
            let installed = match prev {
                Some(prev) if prev.spec == *spec => prev,
                prev => {
                    let s = self.install_service(spec, prev)?;
                    log::info!(
                        "service {} ({}) with {} real servers",
                        spec.addr,
                        spec.scheduler,
                        s.dest_ids.len()
                    );
                    s
                }
            };
            self.services.push(installed);
        }
        for gone in old {
            log::info!("service {} removed", gone.spec.addr);
            self.dataplane.remove_service(&gone.spec.addr.map_key())?;
            for id in gone.dest_ids {
                self.retire_dest(id)?;
            }
            self.service_ids.free(gone.id);
            self.retired_tables.push(gone.table);
        }
        // New real servers start unresolved; this gives them their MACs (or probes them).
        self.refresh_neighbours()
    }

    /// Writes `spec` as a new service, or over `prev` (same identity), keeping the slots of
    /// real servers present in both.
    fn install_service(
        &mut self,
        spec: &ServiceSpec,
        prev: Option<InstalledService>,
    ) -> Result<InstalledService> {
        let full = |what: &str| anyhow::anyhow!("service {}: no free {what}", spec.addr);
        let (id, mut kept) = match prev {
            Some(p) => {
                self.retired_tables.push(p.table);
                (
                    p.id,
                    p.spec
                        .dests
                        .iter()
                        .map(|d| d.addr)
                        .zip(p.dest_ids)
                        .collect::<HashMap<_, _>>(),
                )
            }
            None => (
                self.service_ids.alloc().ok_or_else(|| full("service id"))?,
                HashMap::new(),
            ),
        };
        let mut dest_ids = Vec::with_capacity(spec.dests.len());
        for ds in &spec.dests {
            let (dest_id, mut dest) = match kept.remove(&ds.addr) {
                Some(id) => (id, self.dataplane.dest(id)?),
                None => {
                    let id = self
                        .dest_ids
                        .alloc()
                        .ok_or_else(|| full("real server slot"))?;
                    let generation = self.dataplane.claim_dest(id)?;
                    let addr = u32::from_ne_bytes(ds.addr.octets());
                    (
                        id,
                        Dest {
                            addr,
                            generation,
                            ..Dest::default()
                        },
                    )
                }
            };
            dest.weight = ds.weight;
            dest.u_threshold = ds.u_threshold;
            dest.l_threshold = ds.l_threshold;
            self.dataplane.write_dest(dest_id, &dest)?;
            dest_ids.push(dest_id);
        }
        for (_, id) in kept {
            self.retire_dest(id)?;
        }
        let size = spec.table_size();
        let offset = self
            .tables
            .alloc(size)
            .ok_or_else(|| full("room in the table pool"))?;
        self.dataplane.write_service(
            spec.addr.map_key(),
            spec.map_value(id, offset),
            &dest_ids,
            spec.table().as_deref(),
        )?;
        Ok(InstalledService {
            spec: spec.clone(),
            id,
            dest_ids,
            table: (offset, size),
        })
    }

    /// Takes a real server out of service: a new generation (its flows and templates no longer
    /// match) and no MAC; the slot can be given out again.
    fn retire_dest(&mut self, id: u32) -> Result<()> {
        let generation = self.dataplane.claim_dest(id)?;
        self.dataplane.write_dest(
            id,
            &Dest {
                generation,
                ..Dest::default()
            },
        )?;
        self.dest_ids.free(id);
        Ok(())
    }

    /// Re-reads the configuration file and applies the difference; on any error nothing changes.
    fn reload(&mut self) -> Result<()> {
        let path = self
            .config
            .clone()
            .context("the daemon was started without --config")?;
        let config = Config::load(&path)?;
        self.timeouts = config.timeouts;
        self.apply(&config.services)
    }

    fn installed_dests(&self) -> impl Iterator<Item = (Ipv4Addr, u32)> + '_ {
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
        let ids: Vec<_> = self.installed_dests().collect();
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
        for (offset, size) in self.retired_tables.drain(..) {
            self.tables.free(offset, size);
        }
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
                Command::Reload => self
                    .reload()
                    .map(|()| Reply::Done)
                    .map_err(|e| format!("{e:#}")),
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
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut ticker = tokio::time::interval(TICK);
    let outcome = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = hup.recv() => match daemon.reload() {
                Ok(()) => log::info!("configuration reloaded"),
                Err(e) => log::error!("reload refused, nothing changed: {e:#}"),
            },
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
