//! The daemon's logic, free of I/O but for the maps: it carries out the reconciler's plans,
//! keeps the counters, runs the program's sweeper, and answers xdpvsadm's requests. Time and the
//! neighbour table are given to it, so that tests run it on a virtual clock over fake maps.
//!
//! It keeps the configured services (the file's, changed by xdpvsadm's edits) apart from the
//! installed ones: the health [`Monitor`] derives the latter from the former, so that an edit
//! and a health transition each re-plan the same overlay.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
};

use anyhow::Result;
use lb_common::{
    dest::{DEST_F_RESOLVED, Dest},
    event::EventKind,
    expiry::{NS, TOMBSTONE, TemplateRule},
    service::SchedState,
    state::{STATE_COUNT, Timeouts},
};

use crate::{
    control::{Command, Reply},
    counters::{Counters, Owner, SAMPLE_TICKS},
    edit::{self, Edit},
    health::{model::ServiceHealth, monitor::Monitor, runner::Report},
    listing::{Connection, DestStatus, Listing, ServiceStatus, TrafficStatus},
    locality,
    maps::{Maps, live_conns_at},
    model::{DestSpec, ServiceAddr, ServiceSpec},
    neigh::{self, Neighbour},
    reconcile::{self, Installed, InstalledService, Step},
    saved::SavedState,
};

/// Log target of the program's decisions (`RUST_LOG=xdpvs::xdp=debug` shows them alone).
pub const XDP_LOG_TARGET: &str = "xdpvs::xdp";

/// Every this many ticks every real server is probed, so that its neighbour entry stays fresh.
const REPROBE_TICKS: u32 = 30;

/// The control plane's state over the maps `M`.
pub struct Engine<M: Maps> {
    maps: M,
    /// The services as configured and edited, before the health overlay.
    configured: Vec<ServiceSpec>,
    monitor: Monitor,
    /// Notifier commands for the shell to run.
    notifications: Vec<String>,
    installed: Installed,
    timeouts: Timeouts,
    counters: Counters,
    neighbours: HashMap<IpAddr, Neighbour>,
    flow_table_size: u32,
    ticks: u32,
}

impl<M: Maps> Engine<M> {
    /// An engine over `maps` with nothing installed.
    pub fn new(maps: M, flow_table_size: u32, timeouts: Timeouts) -> Self {
        Self {
            maps,
            configured: Vec::new(),
            monitor: Monitor::default(),
            notifications: Vec::new(),
            installed: Installed::default(),
            timeouts,
            counters: Counters::default(),
            neighbours: HashMap::new(),
            flow_table_size,
            ticks: 0,
        }
    }

    /// The maps.
    pub fn maps(&self) -> &M {
        &self.maps
    }

    /// The maps, for attaching and unloading.
    pub fn maps_mut(&mut self) -> &mut M {
        &mut self.maps
    }

    /// Gives the maps back.
    pub fn into_maps(self) -> M {
        self.maps
    }

    /// The installed services.
    pub fn installed(&self) -> &Installed {
        &self.installed
    }

    /// Sets the connection timeouts, here and in the sweeper's map.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<()> {
        self.maps.write_timeouts(&timeouts)?;
        self.timeouts = timeouts;
        Ok(())
    }

    /// Takes over what a predecessor saved if every service is in the map under the id, list
    /// and table the state says and no two share anything; otherwise nothing is adopted (flows
    /// are rescheduled). Services in the map that nobody accounts for are removed either way.
    pub fn adopt(&mut self, saved: Option<SavedState>) -> Result<bool> {
        let matches = |s: &InstalledService| {
            let value = s.spec.map_value(s.id, s.list.offset, s.table.offset);
            s.list.len as usize == s.dest_ids.len()
                && s.dest_ids.len() == s.spec.dests.len()
                && s.table.len == value.table_size
                && matches!(self.maps.service(&s.spec.addr.map_key()), Ok(Some(v)) if v == value)
        };
        let adopted = match saved {
            Some(saved) => {
                let installed = Installed {
                    services: saved.services,
                    retired: Default::default(),
                };
                let ok = saved.timeouts.len() == STATE_COUNT
                    && installed.services.iter().all(matches)
                    && installed.is_consistent();
                if ok {
                    log::info!(
                        "adopted {} services from the previous daemon",
                        installed.services.len()
                    );
                    self.set_timeouts(Timeouts(
                        saved.timeouts.try_into().expect("checked length"),
                    ))?;
                    self.installed = installed;
                    self.counters = Counters::restore(saved.baselines);
                } else {
                    log::warn!("the saved state does not match the pinned maps; starting afresh");
                }
                ok
            }
            None => false,
        };
        for key in self.maps.service_keys()? {
            if !self
                .installed
                .services
                .iter()
                .any(|s| s.spec.addr.map_key() == key)
            {
                self.maps.remove_service(&key)?;
            }
        }
        Ok(adopted)
    }

    /// What a successor needs to adopt the maps.
    pub fn saved(&self) -> SavedState {
        SavedState::new(
            self.installed.services.clone(),
            self.timeouts.0.to_vec(),
            self.counters.baselines(),
        )
    }

    /// Makes `specs` the configured services and the maps hold them as the health overlay
    /// has them, changing only what differs. A plan that does not fit is refused before
    /// anything is written; if a map write fails midway, the record keeps what was carried
    /// out, so that it matches the maps.
    pub fn apply(&mut self, specs: &[ServiceSpec]) -> Result<()> {
        self.install(specs.to_vec(), self.monitor.clone())
    }

    /// As [`Engine::apply`], with new health-check settings at `now` (checkers that did not
    /// change keep their state). Refused whole, health included, if the plan does not fit.
    pub fn apply_with_health(
        &mut self,
        specs: &[ServiceSpec],
        health: &[ServiceHealth],
        now: u64,
    ) -> Result<()> {
        let mut monitor = self.monitor.clone();
        monitor.configure(health, now);
        self.install(specs.to_vec(), monitor)
    }

    /// Takes a checker's report at `now`; a change of a real server's state or weight is
    /// installed. Returns whether anything changed.
    pub fn report(&mut self, report: &Report, now: u64) -> Result<bool> {
        let (changed, notify) = self.monitor.report(
            &report.key,
            report.verdict,
            &report.outcome,
            report.latency,
            now,
        );
        self.notifications.extend(notify);
        if !changed {
            return Ok(false);
        }
        self.install(self.configured.clone(), self.monitor.clone())?;
        Ok(true)
    }

    /// The notifier commands due since the last call, for the shell to run.
    pub fn take_notifications(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notifications)
    }

    /// The notifiers `omega` runs when the daemon stops.
    pub fn stop_notifications(&self) -> Vec<String> {
        self.monitor.stop()
    }

    /// Installs `configured` as `monitor` overlays it; both are kept only if the plan fits.
    fn install(&mut self, configured: Vec<ServiceSpec>, mut monitor: Monitor) -> Result<()> {
        let notify = monitor.update_quorum(&configured);
        let effective = monitor.effective(&configured);
        let plan = reconcile::plan(&self.installed, &effective)?;
        self.configured = configured;
        self.monitor = monitor;
        self.notifications.extend(notify);
        // A run of claimed slots is carried out together, one map call per map.
        for steps in plan.chunk_by(|a, b| claim(a).is_some() && claim(b).is_some()) {
            let claims: Vec<_> = steps.iter().filter_map(claim).collect();
            if claims.is_empty() {
                for step in steps {
                    self.carry_out(step)?;
                    self.installed.record(step);
                }
            } else {
                self.claim_dests(&claims)?;
                steps.iter().for_each(|step| self.installed.record(step));
            }
        }
        self.installed.order_as(&effective);
        Ok(())
    }

    /// Gives slots to new real servers ([`Step::ClaimDest`]s): a new generation each, live
    /// counts and counters from zero.
    fn claim_dests(&mut self, claims: &[(u32, &DestSpec)]) -> Result<()> {
        let ids: Vec<u32> = claims.iter().map(|(id, _)| *id).collect();
        let old = self.maps.dests_at(&ids)?;
        // The slots' live counts start from zero.
        let counted_in = self.maps.counted_in_at(&ids)?;
        self.maps.write_released_at(&ids, &counted_in)?;
        for (id, raw) in ids.iter().zip(self.maps.dest_traffic_at(&ids)?) {
            self.counters.zero(Owner::Dest(*id), raw.into());
        }
        let dests: Vec<Dest> = claims
            .iter()
            .zip(old)
            .map(|((_, spec), old)| {
                let mut dest = Dest {
                    addr: spec.addr.into(),
                    generation: old.generation.wrapping_add(1),
                    ..Dest::default()
                };
                set_spec(&mut dest, spec);
                set_neighbour(&mut dest, self.neighbours.get(&spec.addr));
                dest
            })
            .collect();
        self.maps.write_dests_at(&ids, &dests)
    }

    /// Carries out one step.
    fn carry_out(&mut self, step: &Step) -> Result<()> {
        match step {
            Step::ClaimDest { id, spec } => self.claim_dests(&[(*id, spec)]),
            Step::UpdateDest { id, spec } => {
                let mut dest = self.maps.dest(*id)?;
                set_spec(&mut dest, spec);
                self.maps.write_dest(*id, &dest)
            }
            Step::WriteList { offset, ids } => self.maps.write_list(*offset, ids),
            Step::WriteTable { offset, buckets } => self.maps.write_table(*offset, buckets),
            Step::Switch { service: s, new } => {
                if *new {
                    self.zero_counters(Owner::Service(s.id))?;
                }
                let value = s.spec.map_value(s.id, s.list.offset, s.table.offset);
                let rule = TemplateRule {
                    timeout: value.persist_timeout,
                    mask: value.persist_mask,
                };
                self.maps.write_template_rule(s.id, &rule)?;
                // The state carries over, as IPVS's does, unless the service or its scheduler
                // is new.
                let key = s.spec.addr.map_key();
                let kept = !*new
                    && self
                        .maps
                        .service(&key)?
                        .is_some_and(|old| old.scheduler == value.scheduler);
                let state = if kept {
                    self.maps.sched(s.id)?
                } else {
                    SchedState::default()
                };
                self.maps.write_sched(s.id, &state.dests_changed(&value))?;
                self.maps.write_service(&key, &value)?;
                log::info!(
                    "service {} ({}) with {} real servers",
                    s.spec.addr,
                    s.spec.scheduler.name(),
                    s.dest_ids.len()
                );
                Ok(())
            }
            Step::RetireDest { id } => {
                let generation = self.maps.dest(*id)?.generation.wrapping_add(1);
                // The slot counts nothing from now on: its flows no longer match it.
                let counted_in = self.maps.counted_in(*id)?;
                self.maps.write_released(*id, &counted_in)?;
                self.counters.forget(Owner::Dest(*id));
                self.maps.write_dest(
                    *id,
                    &Dest {
                        generation,
                        ..Dest::default()
                    },
                )
            }
            Step::Remove { addr } => {
                self.maps.remove_service(&addr.map_key())?;
                if let Some(id) = self.installed.get(addr).map(|s| s.id) {
                    let shown = self.traffic(Owner::Service(id))?;
                    self.counters.retire(shown);
                    self.counters.forget(Owner::Service(id));
                }
                log::info!("service {addr} removed");
                Ok(())
            }
            Step::Synchronize => self.maps.synchronize(),
        }
    }

    /// Applies ipvsadm-style edits as one change: all of them or, on the first refusal (whose
    /// message is ipvsadm's), none.
    pub fn edit(&mut self, edits: &[Edit]) -> Result<(), String> {
        let next = edit::apply(&self.configured, edits).map_err(|e| e.to_string())?;
        self.apply(&next).map_err(|e| format!("{e:#}"))
    }

    /// `-Z`: zeroes the counters of one service and its real servers, or of everything.
    pub fn zero(&mut self, only: Option<ServiceAddr>) -> Result<(), String> {
        let chosen: Vec<Owner> = self
            .installed
            .services
            .iter()
            .filter(|s| only.is_none_or(|a| a == s.spec.addr))
            .flat_map(owners)
            .collect();
        if chosen.is_empty() && only.is_some() {
            return Err("No such service".into());
        }
        let failed = |e: anyhow::Error| format!("{e:#}");
        for owner in chosen {
            if only.is_some() && matches!(owner, Owner::Service(_)) {
                let shown = self.traffic(owner).map_err(failed)?;
                self.counters.retire(shown);
            }
            self.zero_counters(owner).map_err(failed)?;
        }
        if only.is_none() {
            for (g, raw) in self.maps.globals().map_err(failed)? {
                self.counters.zero_global(g.name(), raw);
            }
            self.counters.zero_retired();
        }
        Ok(())
    }

    fn installed_dests(&self) -> impl Iterator<Item = (IpAddr, u32)> + '_ {
        self.installed.services.iter().flat_map(|s| {
            s.spec
                .dests
                .iter()
                .map(|d| d.addr)
                .zip(s.dest_ids.iter().copied())
        })
    }

    /// Takes the kernel's neighbour table: picks up new and changed MACs. Returns the real
    /// servers to probe: those whose MAC is unknown, and all of them now and then so that
    /// their entries stay fresh.
    pub fn set_neighbours(
        &mut self,
        table: HashMap<IpAddr, Neighbour>,
        reprobe: bool,
    ) -> Result<Vec<IpAddr>> {
        self.neighbours = table;
        let (addrs, ids): (Vec<IpAddr>, Vec<u32>) = self.installed_dests().unzip();
        let (mut changed, mut written) = (Vec::new(), Vec::new());
        let mut probes = Vec::new();
        let dests = self.maps.dests_at(&ids)?;
        for ((addr, id), mut dest) in addrs.into_iter().zip(ids).zip(dests) {
            let before = dest;
            let found = self.neighbours.get(&addr);
            set_neighbour(&mut dest, found);
            if dest != before {
                match found {
                    Some(n) => log::info!("real server {addr} is at {}", neigh::format_mac(&n.mac)),
                    None => log::warn!("real server {addr}: MAC address unknown, not scheduled"),
                }
                changed.push(id);
                written.push(dest);
            }
            if found.is_none() || reprobe {
                probes.push(addr);
            }
        }
        self.maps.write_dests_at(&changed, &written)?;
        // A real server of several services is probed once.
        probes.sort_unstable();
        probes.dedup();
        Ok(probes)
    }

    /// The periodic work at monotonic time `now` with the kernel's neighbour `table`: MACs,
    /// counter samples, the program's events, expiry. Returns the addresses to probe.
    pub fn tick(&mut self, now: u64, table: HashMap<IpAddr, Neighbour>) -> Result<Vec<IpAddr>> {
        self.ticks = self.ticks.wrapping_add(1);
        let probes = self.set_neighbours(table, self.ticks.is_multiple_of(REPROBE_TICKS))?;
        if self.ticks.is_multiple_of(SAMPLE_TICKS) {
            self.sample_counters()?;
        }
        self.log_events()?;
        self.maps.expire()?;
        let caching: HashSet<u32> = self
            .installed
            .services
            .iter()
            .filter(|s| s.spec.scheduler.caches_destinations())
            .map(|s| s.id)
            .collect();
        locality::expire(&mut self.maps, &caching, now)?;
        Ok(probes)
    }

    /// Logs the program's decisions at debug level (it reports them only when that is on).
    fn log_events(&mut self) -> Result<()> {
        for e in self.maps.events()? {
            let service = self.installed.services.iter().find(|s| s.id == e.service);
            let dest = service.and_then(|s| {
                let i = s.dest_ids.iter().position(|d| *d == e.dest)?;
                Some(s.spec.dests[i].addr)
            });
            let client = SocketAddr::new(e.src_addr.into(), u16::from_be(e.src_port));
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
        let services: Vec<u32> = self.installed.services.iter().map(|s| s.id).collect();
        for id in services {
            let owner = Owner::Service(id);
            let raw = self.raw_traffic(owner)?;
            self.counters.sample(owner, raw);
        }
        let ids: Vec<u32> = self.installed_dests().map(|(_, id)| id).collect();
        for (id, raw) in ids.iter().zip(self.maps.dest_traffic_at(&ids)?) {
            self.counters.sample(Owner::Dest(*id), raw.into());
        }
        Ok(())
    }

    /// The program's cumulative sums for `owner`.
    fn raw_traffic(&self, owner: Owner) -> Result<TrafficStatus> {
        Ok(match owner {
            Owner::Service(id) => self.maps.service_traffic(id)?,
            Owner::Dest(id) => self.maps.dest_traffic(id)?,
        }
        .into())
    }

    /// Starts `owner`'s counters from zero at the program's current sums.
    fn zero_counters(&mut self, owner: Owner) -> Result<()> {
        let raw = self.raw_traffic(owner)?;
        self.counters.zero(owner, raw);
        Ok(())
    }

    fn traffic(&self, owner: Owner) -> Result<TrafficStatus> {
        Ok(self.counters.traffic(owner, self.raw_traffic(owner)?))
    }

    /// The listing xdpvsadm prints at monotonic time `now`.
    pub fn listing(&self, now: u64) -> Result<Listing> {
        let mut persistent: HashMap<u32, u32> = HashMap::new();
        for (_, t) in self.maps.templates()? {
            if t.last_used_ns != TOMBSTONE && self.maps.dest(t.dest)?.holds(t.dest_generation) {
                *persistent.entry(t.dest).or_default() += 1;
            }
        }
        // Every slot's entries at once, in the services' order.
        let ids: Vec<u32> = self.installed_dests().map(|(_, id)| id).collect();
        let mut slots = ids
            .iter()
            .zip(self.maps.dests_at(&ids)?)
            .zip(live_conns_at(&self.maps, &ids)?)
            .zip(self.maps.dest_traffic_at(&ids)?);
        let mut services = Vec::with_capacity(self.installed.services.len());
        for s in &self.installed.services {
            let mut dests = Vec::with_capacity(s.dest_ids.len());
            // `zip` asks `slots` only while the service has real servers left.
            for (spec, (((id, dest), conns), raw)) in s.spec.dests.iter().zip(slots.by_ref()) {
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
                    traffic: self.counters.traffic(owner, raw.into()),
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
                health: self.monitor.status(&s.spec.addr, now),
            });
        }
        let counters = self
            .maps
            .globals()?
            .into_iter()
            .map(|(g, v)| (g.name().to_owned(), self.counters.global(g.name(), v)))
            .collect();
        let shown = services
            .iter()
            .fold(TrafficStatus::default(), |sum, s| sum.plus(&s.traffic));
        Ok(Listing {
            flow_table_size: self.flow_table_size,
            services,
            counters,
            total: self.counters.total(shown),
            ha: None,
        })
    }

    /// The connection table with the persistence templates at monotonic time `now`, as
    /// `-Lnc` lists them.
    pub fn connections(&self, now: u64) -> Result<Vec<Connection>> {
        let mut services = HashMap::new();
        let mut dests = HashMap::new();
        for s in &self.installed.services {
            services.insert(s.id, &s.spec);
            for (d, id) in s.spec.dests.iter().zip(&s.dest_ids) {
                dests.insert(*id, d.addr);
            }
        }
        let mut out = Vec::new();
        let endpoint = |addr: IpAddr, port: u16| SocketAddr::new(addr, port);
        for (key, flow) in self.maps.flows()? {
            let (Some(svc), Some(dest)) = (services.get(&flow.service), dests.get(&flow.dest))
            else {
                continue;
            };
            if flow.last_seen_ns == TOMBSTONE
                || !self.maps.dest(flow.dest)?.holds(flow.dest_generation)
            {
                continue;
            }
            let idle = now.saturating_sub(flow.last_seen_ns) / NS;
            out.push(Connection {
                protocol: svc.addr.protocol,
                client: endpoint(key.src_addr.into(), u16::from_be(key.src_port)),
                service: endpoint(svc.addr.addr, svc.addr.port),
                dest: endpoint(*dest, svc.addr.port),
                state: flow.state().name().into(),
                expires: u64::from(self.timeouts.of(flow.state())).saturating_sub(idle) as u32,
            });
        }
        for (key, t) in self.maps.templates()? {
            let (Some(svc), Some(dest)) = (services.get(&key.service), dests.get(&t.dest)) else {
                continue;
            };
            let Some(p) = svc.persistence else { continue };
            if t.last_used_ns == TOMBSTONE {
                continue;
            }
            let idle = now.saturating_sub(t.last_used_ns) / NS;
            out.push(Connection {
                protocol: svc.addr.protocol,
                client: endpoint(key.client.into(), 0),
                service: endpoint(svc.addr.addr, svc.addr.port),
                dest: endpoint(*dest, svc.addr.port),
                state: t.state_name().into(),
                expires: u64::from(p.timeout).saturating_sub(idle) as u32,
            });
        }
        Ok(out)
    }

    fn timeouts_reply(&self) -> Reply {
        use lb_common::state::ConnState::{Established, FinWait, Udp};
        Reply::Timeouts([Established, FinWait, Udp].map(|s| self.timeouts.of(s)))
    }

    /// Answers a command at monotonic time `now`. `Reload` needs the configuration file, which
    /// the daemon reads: it is refused here.
    pub fn handle(&mut self, command: Command, now: u64) -> Result<Reply, String> {
        let failed = |e: anyhow::Error| format!("{e:#}");
        match command {
            Command::List => self.listing(now).map(Reply::Listing).map_err(failed),
            Command::Connections => self
                .connections(now)
                .map(Reply::Connections)
                .map_err(failed),
            Command::Timeouts => Ok(self.timeouts_reply()),
            Command::Reload => Err("the daemon was started without --config".into()),
            Command::Edit(edits) => self.edit(&edits).map(|()| Reply::Done),
            Command::Zero(only) => self.zero(only).map(|()| Reply::Done),
            Command::SetTimeouts { tcp, tcpfin, udp } => {
                let mut timeouts = self.timeouts;
                timeouts.set(tcp, tcpfin, udp);
                self.set_timeouts(timeouts).map_err(failed)?;
                log::info!("timeouts now tcp {tcp} tcpfin {tcpfin} udp {udp} (0 kept)");
                Ok(self.timeouts_reply())
            }
        }
    }
}

/// The counter owners of a service: itself and its real servers.
fn owners(s: &InstalledService) -> impl Iterator<Item = Owner> + '_ {
    std::iter::once(Owner::Service(s.id)).chain(s.dest_ids.iter().map(|d| Owner::Dest(*d)))
}

/// The slot and settings of a [`Step::ClaimDest`].
fn claim(step: &Step) -> Option<(u32, &DestSpec)> {
    match step {
        Step::ClaimDest { id, spec } => Some((*id, spec)),
        _ => None,
    }
}

fn set_spec(dest: &mut Dest, spec: &DestSpec) {
    dest.weight = spec.weight;
    dest.u_threshold = spec.u_threshold;
    dest.l_threshold = spec.l_threshold;
}

fn set_neighbour(dest: &mut Dest, n: Option<&Neighbour>) {
    match n {
        Some(n) => {
            dest.mac = n.mac;
            dest.flags |= DEST_F_RESOLVED;
        }
        None => dest.flags &= !DEST_F_RESOLVED,
    }
}

#[cfg(test)]
mod tests;
