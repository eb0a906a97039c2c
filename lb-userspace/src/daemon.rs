//! xdpvsd: loads and attaches the program, mirrors the configured services into its maps,
//! resolves real servers' MACs, expires idle flows and answers xdpvsadm.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use lb_common::{
    dest::{DEST_F_RESOLVED, Dest},
    event::EventKind,
    flow::{Flow, FlowKey, PersistKey},
    state::{ConnState, STATE_COUNT, Timeouts},
};

use crate::{
    config::Config,
    control::{Command, PROTOCOL_VERSION, Reply, Request, Response},
    counters::{Counters, Owner, SAMPLE_TICKS},
    dataplane::{DataPlane, monotonic_ns},
    edit::{self, Edit},
    iface,
    listing::{Connection, DestStatus, Listing, ServiceStatus, TrafficStatus},
    model::{Persistence, ServiceAddr, ServiceSpec},
    neigh,
    saved::{InstalledService, SavedState},
    tables::{IdPool, TablePool},
};

/// How often neighbours are refreshed, idle flows expired and counters sampled.
pub const TICK: Duration = Duration::from_secs(1);
/// Log target of the program's decisions (`RUST_LOG=xdpvs::xdp=debug` shows them alone).
pub const XDP_LOG_TARGET: &str = "xdpvs::xdp";

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
    /// Where the daemon keeps its bookkeeping for its successor.
    pub state_file: PathBuf,
    /// Loopback address for the Prometheus text exposition, if any.
    pub metrics: Option<std::net::SocketAddr>,
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
            services: config
                .as_ref()
                .map(|c| c.services.clone())
                .unwrap_or_default(),
            pin_dir: crate::DEFAULT_PIN_DIR.into(),
            socket: crate::DEFAULT_SOCKET.into(),
            max_flows: lb_common::DEFAULT_MAX_FLOWS,
            allow_generic: true,
            state_file: crate::DEFAULT_STATE_FILE.into(),
            metrics: config.as_ref().and_then(|c| c.metrics),
            config: path,
        })
    }
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
    /// Baselines and rates of the traffic counters.
    counters: Counters,
    /// Where the bookkeeping is saved after every change.
    state_file: PathBuf,
}

impl Daemon {
    /// A daemon over a loaded data plane, with nothing installed yet.
    pub fn new(dataplane: DataPlane, opts: &Options) -> Self {
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
            counters: Counters::default(),
            state_file: opts.state_file.clone(),
        }
    }

    /// Sets the director's MAC, adopts what a previous daemon left in the pinned maps (`saved`,
    /// if it matches them), drops services nobody accounts for, and installs the configured
    /// services; without a configuration file an adopted table is kept as it is.
    pub fn install(&mut self, opts: &Options, saved: Option<SavedState>) -> Result<()> {
        let debug = log::log_enabled!(target: XDP_LOG_TARGET, log::Level::Debug);
        self.dataplane
            .set_director(iface::mac(&opts.interface)?, debug)?;
        let adopted = saved.is_some_and(|s| self.adopt(s));
        let known: Vec<_> = self
            .services
            .iter()
            .map(|s| s.spec.addr.map_key())
            .collect();
        for stale in self
            .dataplane
            .service_keys()?
            .into_iter()
            .filter(|k| !known.contains(k))
        {
            self.dataplane.remove_service(&stale)?;
        }
        if adopted && opts.config.is_none() {
            return self.apply(&self.specs());
        }
        self.timeouts = opts.timeouts;
        self.apply(&opts.services)
    }

    /// Takes over a predecessor's services, ids and table regions if every service is in the
    /// map under the id the state says; otherwise nothing is adopted (flows are rescheduled).
    fn adopt(&mut self, saved: SavedState) -> bool {
        let consistent = saved.timeouts.len() == STATE_COUNT
            && saved.services.iter().all(|s| {
                matches!(self.dataplane.service(&s.spec.addr.map_key()), Ok(Some(v)) if v.id == s.id)
            })
            && saved.services.iter().all(|s| {
                self.service_ids.take(s.id)
                    && s.dest_ids.iter().all(|d| self.dest_ids.take(*d))
                    && self.tables.reserve(s.table.0, s.table.1)
            });
        if !consistent {
            log::warn!("the saved state does not match the pinned maps; starting afresh");
            self.service_ids = IdPool::new(lb_common::MAX_SERVICES);
            self.dest_ids = IdPool::new(lb_common::MAX_DESTS);
            self.tables = TablePool::default();
            return false;
        }
        log::info!(
            "adopted {} services from the previous daemon",
            saved.services.len()
        );
        self.timeouts = Timeouts(saved.timeouts.try_into().expect("checked length"));
        self.services = saved.services;
        self.counters = Counters::restore(saved.baselines);
        true
    }

    /// Saves the bookkeeping for a successor; a failure is logged (the data plane is fine).
    pub fn save(&self) {
        let state = SavedState::new(
            self.services.clone(),
            self.timeouts.0.to_vec(),
            self.counters.baselines(),
        );
        if let Err(e) = state.store(&self.state_file) {
            log::error!("cannot save the daemon's state: {e:#}");
        }
    }

    /// The installed services' specs in list order.
    fn specs(&self) -> Vec<ServiceSpec> {
        self.services.iter().map(|s| s.spec.clone()).collect()
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
                        spec.scheduler.name(),
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
            self.counters.forget(Owner::Service(gone.id));
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
            None => {
                let id = self.service_ids.alloc().ok_or_else(|| full("service id"))?;
                self.zero_counters(Owner::Service(id))?;
                (id, HashMap::new())
            }
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
                    self.zero_counters(Owner::Dest(id))?;
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
            spec.map_value(id, id * lb_common::MAX_DESTS_PER_SERVICE, offset),
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
        self.counters.forget(Owner::Dest(id));
        Ok(())
    }

    /// Re-reads the configuration file and applies the difference; on any error nothing changes.
    pub fn reload(&mut self) -> Result<()> {
        let path = self
            .config
            .clone()
            .context("the daemon was started without --config")?;
        let config = Config::load(&path)?;
        self.timeouts = config.timeouts;
        self.apply(&config.services)
    }

    /// Applies ipvsadm-style edits as one change: all of them or, on the first refusal (whose
    /// message is ipvsadm's), none.
    fn edit(&mut self, edits: &[Edit]) -> Result<(), String> {
        let next = edit::apply(&self.specs(), edits).map_err(|e| e.to_string())?;
        self.apply(&next).map_err(|e| format!("{e:#}"))
    }

    /// `-Z`: zeroes the counters of one service and its real servers, or of everything.
    fn zero(&mut self, only: Option<ServiceAddr>) -> Result<(), String> {
        let all = only.is_none();
        let chosen: Vec<Owner> = self
            .services
            .iter()
            .filter(|s| only.is_none_or(|a| a == s.spec.addr))
            .flat_map(owners)
            .collect();
        if chosen.is_empty() && !all {
            return Err("No such service".into());
        }
        let failed = |e: anyhow::Error| format!("{e:#}");
        for owner in chosen {
            self.zero_counters(owner).map_err(failed)?;
        }
        if all {
            for (g, raw) in self.dataplane.globals().map_err(failed)? {
                self.counters.zero_global(g.name(), raw);
            }
        }
        Ok(())
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

    /// The periodic work: frees retired tables, refreshes neighbours, samples counters,
    /// expires idle flows and templates.
    pub fn tick(&mut self) -> Result<()> {
        self.ticks = self.ticks.wrapping_add(1);
        for (offset, size) in self.retired_tables.drain(..) {
            self.tables.free(offset, size);
        }
        self.refresh_neighbours()?;
        if self.ticks.is_multiple_of(SAMPLE_TICKS) {
            self.sample_counters()?;
        }
        self.log_events()?;
        let now = monotonic_ns();
        let live = self.dataplane.expire(&self.timeouts, now)?;
        self.expire_templates(&live, now)
    }

    /// Logs the program's decisions at debug level (it reports them only when that is on).
    fn log_events(&mut self) -> Result<()> {
        for e in self.dataplane.events()? {
            let service = self.services.iter().find(|s| s.id == e.service);
            let dest = service.and_then(|s| {
                let i = s.dest_ids.iter().position(|d| *d == e.dest)?;
                Some(s.spec.dests[i].addr)
            });
            let client = SocketAddrV4::new(
                Ipv4Addr::from(e.src_addr.to_ne_bytes()),
                u16::from_be(e.src_port),
            );
            let svc = service.map_or_else(
                || format!("service #{}", e.service),
                |s| s.spec.addr.to_string(),
            );
            match (EventKind::from_u32(e.kind), dest) {
                (Some(EventKind::Scheduled), Some(d)) => {
                    log::debug!(target: XDP_LOG_TARGET, "{client} -> {svc}: new flow to {d}")
                }
                (Some(EventKind::NoDest), _) => {
                    log::debug!(target: XDP_LOG_TARGET, "{client} -> {svc}: dropped, no usable real server")
                }
                (Some(EventKind::FlowTableFull), _) => {
                    log::debug!(target: XDP_LOG_TARGET, "{client} -> {svc}: dropped, connection table full")
                }
                (kind, _) => {
                    log::debug!(target: XDP_LOG_TARGET, "{client} -> {svc}: {kind:?} dest #{}", e.dest)
                }
            }
        }
        Ok(())
    }

    fn sample_counters(&mut self) -> Result<()> {
        let all: Vec<Owner> = self.services.iter().flat_map(owners).collect();
        for owner in all {
            let raw = self.raw_traffic(owner)?;
            self.counters.sample(owner, raw);
        }
        Ok(())
    }

    /// The program's cumulative sums for `owner`.
    fn raw_traffic(&self, owner: Owner) -> Result<TrafficStatus> {
        Ok(match owner {
            Owner::Service(id) => self.dataplane.service_traffic(id)?,
            Owner::Dest(id) => self.dataplane.dest_traffic(id)?,
        }
        .into())
    }

    /// Starts `owner`'s counters from zero at the program's current sums.
    fn zero_counters(&mut self, owner: Owner) -> Result<()> {
        let raw = self.raw_traffic(owner)?;
        self.counters.zero(owner, raw);
        Ok(())
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
    pub fn listing(&mut self) -> Result<Listing> {
        let mut persistent: HashMap<u32, u32> = HashMap::new();
        for (_, t) in self.dataplane.templates()? {
            if self.dataplane.dest(t.dest)?.generation == t.dest_generation {
                *persistent.entry(t.dest).or_default() += 1;
            }
        }
        let mut services = Vec::with_capacity(self.services.len());
        for s in &self.services {
            let mut dests = Vec::with_capacity(s.dest_ids.len());
            for (spec, id) in s.spec.dests.iter().zip(&s.dest_ids) {
                let dest = self.dataplane.dest(*id)?;
                let conns = self.dataplane.conns(*id)?;
                let owner = Owner::Dest(*id);
                dests.push(DestStatus {
                    addr: spec.addr,
                    port: s.spec.addr.port,
                    weight: dest.weight,
                    u_threshold: dest.u_threshold,
                    l_threshold: dest.l_threshold,
                    persistent: persistent.get(id).copied().unwrap_or(0),
                    active: conns.active,
                    inactive: conns.inactive,
                    mac: dest.is_resolved().then(|| neigh::format_mac(&dest.mac)),
                    traffic: self.traffic(owner)?,
                    rates: self.counters.rates(owner),
                });
            }
            let owner = Owner::Service(s.id);
            services.push(ServiceStatus {
                addr: s.spec.addr,
                scheduler: s.spec.scheduler,
                flags: s.spec.flags,
                persistence: s.spec.persistence,
                dests,
                traffic: self.traffic(owner)?,
                rates: self.counters.rates(owner),
            });
        }
        let counters = self
            .dataplane
            .globals()?
            .into_iter()
            .map(|(g, v)| (g.name().to_owned(), self.counters.global(g.name(), v)))
            .collect();
        Ok(Listing {
            flow_table_size: self.max_flows,
            services,
            counters,
        })
    }

    fn traffic(&self, owner: Owner) -> Result<TrafficStatus> {
        Ok(self.counters.traffic(owner, self.raw_traffic(owner)?))
    }

    /// The connection table with the persistence templates, as `-Lnc` lists them.
    pub fn connections(&mut self) -> Result<Vec<Connection>> {
        let now = monotonic_ns();
        let mut services = HashMap::new();
        let mut dests = HashMap::new();
        for s in &self.services {
            services.insert(s.id, s.spec.clone());
            for (d, id) in s.spec.dests.iter().zip(&s.dest_ids) {
                dests.insert(*id, d.addr);
            }
        }
        let mut out = Vec::new();
        let endpoint = |addr: Ipv4Addr, port: u16| SocketAddrV4::new(addr, port);
        for (key, flow) in self.dataplane.flows()? {
            let (Some(svc), Some(dest)) = (services.get(&flow.service), dests.get(&flow.dest))
            else {
                continue;
            };
            if self.dataplane.dest(flow.dest)?.generation != flow.dest_generation {
                continue;
            }
            let idle = now.saturating_sub(flow.last_seen_ns) / 1_000_000_000;
            out.push(Connection {
                protocol: svc.addr.protocol,
                client: endpoint(
                    Ipv4Addr::from(key.src_addr.to_ne_bytes()),
                    u16::from_be(key.src_port),
                ),
                service: endpoint(svc.addr.addr, svc.addr.port),
                dest: endpoint(*dest, svc.addr.port),
                state: flow.state().name().into(),
                expires: u64::from(self.timeouts.of(flow.state())).saturating_sub(idle) as u32,
            });
        }
        for (key, t) in self.dataplane.templates()? {
            let (Some(svc), Some(dest)) = (services.get(&key.service), dests.get(&t.dest)) else {
                continue;
            };
            let Some(p) = svc.persistence else { continue };
            let last = t
                .last_used_ns
                .max(self.template_in_use.get(&key).copied().unwrap_or(0));
            let idle = now.saturating_sub(last) / 1_000_000_000;
            out.push(Connection {
                protocol: svc.addr.protocol,
                client: endpoint(Ipv4Addr::from(key.client.to_ne_bytes()), 0),
                service: endpoint(svc.addr.addr, svc.addr.port),
                dest: endpoint(*dest, svc.addr.port),
                state: ConnState::None.name().into(),
                expires: u64::from(p.timeout).saturating_sub(idle) as u32,
            });
        }
        Ok(out)
    }

    fn timeouts_reply(&self) -> Reply {
        use lb_common::state::ConnState::{Established, FinWait, Udp};
        Reply::Timeouts([Established, FinWait, Udp].map(|s| self.timeouts.of(s)))
    }

    /// Answers one request line; changes are saved for a successor.
    pub fn handle(&mut self, request: &str) -> Response {
        let failed = |e: anyhow::Error| format!("{e:#}");
        let result = match serde_json::from_str::<Request>(request) {
            Err(e) => Err(format!("malformed request: {e}")),
            Ok(r) if r.version != PROTOCOL_VERSION => Err(format!(
                "protocol version {} not supported (daemon speaks {PROTOCOL_VERSION})",
                r.version
            )),
            Ok(r) => {
                let changes = !matches!(
                    r.command,
                    Command::List | Command::Timeouts | Command::Connections
                );
                let result = match r.command {
                    Command::List => self.listing().map(Reply::Listing).map_err(failed),
                    Command::Connections => {
                        self.connections().map(Reply::Connections).map_err(failed)
                    }
                    Command::Timeouts => Ok(self.timeouts_reply()),
                    Command::Reload => self.reload().map(|()| Reply::Done).map_err(failed),
                    Command::Edit(edits) => self.edit(&edits).map(|()| Reply::Done),
                    Command::Zero(only) => self.zero(only).map(|()| Reply::Done),
                    Command::SetTimeouts { tcp, tcpfin, udp } => {
                        self.timeouts.set(tcp, tcpfin, udp);
                        log::info!("timeouts now tcp {tcp} tcpfin {tcpfin} udp {udp} (0 kept)");
                        Ok(self.timeouts_reply())
                    }
                };
                if changes && result.is_ok() {
                    self.save();
                }
                result
            }
        };
        Response {
            version: PROTOCOL_VERSION,
            result,
        }
    }

    /// The data plane, for attaching and unloading.
    pub fn dataplane_mut(&mut self) -> &mut DataPlane {
        &mut self.dataplane
    }

    /// Gives the data plane back (the daemon is done).
    pub fn into_dataplane(self) -> DataPlane {
        self.dataplane
    }
}

/// The counter owners of a service: itself and its real servers.
fn owners(s: &InstalledService) -> impl Iterator<Item = Owner> + '_ {
    std::iter::once(Owner::Service(s.id)).chain(s.dest_ids.iter().map(|d| Owner::Dest(*d)))
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
