//! The loaded XDP program and typed access to its maps. The daemon is their only writer.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use lb_common::{
    config::Director,
    dest::{Dest, DestConns},
    event::Event,
    flow::{Flow, FlowKey, Persist, PersistKey},
    map_names as names, program_names,
    service::{SchedState, Service, ServiceKey},
    state::Timeouts,
    stats::{Global, Traffic},
};

use crate::{EBPF_OBJECT, iface};

/// How the program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) XDP.
    Native,
    /// Generic (skb) XDP, the fallback.
    Generic,
    /// The link a previous daemon pinned now runs this program (its mode is kept).
    Adopted,
}

/// Name of the pinned XDP link in the pin directory.
const LINK_PIN: &str = "link";

/// The loaded object and its maps. Without a pin directory an attachment lasts as long as the
/// object; with one it is a pinned link that outlives it.
pub struct DataPlane {
    ebpf: Ebpf,
    pin_dir: Option<PathBuf>,
}

fn map_err(name: &str) -> impl FnOnce(aya::maps::MapError) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("map {name}: {e}")
}

impl DataPlane {
    /// Loads the programs with a connection table of `max_flows` entries. With `pin_dir`, every
    /// map is pinned there, and maps already pinned there are reused with their contents.
    pub fn load(pin_dir: Option<&Path>, max_flows: u32) -> Result<Self> {
        if EBPF_OBJECT.is_empty() {
            bail!(
                "this binary was built without its XDP object: build it with `cargo xtask build`"
            );
        }
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(names::FLOWS, max_flows);
        loader.map_max_entries(names::PERSIST, max_flows);
        if let Some(dir) = pin_dir {
            iface::ensure_bpffs(dir)?;
            for name in names::ALL {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(EBPF_OBJECT).context("loading the XDP object")?;
        let name = program_names::LOAD_BALANCER;
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .context("program missing")?
            .try_into()?;
        prog.load()
            .with_context(|| format!("loading program {name} (verifier)"))?;
        Ok(Self {
            ebpf,
            pin_dir: pin_dir.map(Path::to_owned),
        })
    }

    /// One of the object's programs ([`program_names`]).
    pub fn program(&self, name: &str) -> &Xdp {
        self.ebpf
            .program(name)
            .and_then(|p| p.try_into().ok())
            .expect("the object has all its programs")
    }

    fn program_mut(&mut self, name: &str) -> &mut Xdp {
        self.ebpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .expect("the object has all its programs")
    }

    /// Attaches the balancer to `interface`: native mode, or generic with a warning when the
    /// driver cannot. An interface whose XDP hook is taken is an error. With a pin directory
    /// the attachment is a pinned link: it outlives the daemon (the program keeps forwarding),
    /// and the next daemon swaps its own program into it atomically.
    pub fn attach(&mut self, interface: &str, allow_generic: bool) -> Result<AttachMode> {
        if let Some(path) = self.link_path().filter(|p| p.exists()) {
            match self.adopt_link(&path) {
                Ok(()) => return Ok(AttachMode::Adopted),
                Err(e) => {
                    log::warn!("the pinned XDP link cannot be reused ({e:#}); attaching anew");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let (mode, id) = self.attach_new(interface, allow_generic)?;
        if let Some(path) = self.link_path() {
            let link = self
                .program_mut(program_names::LOAD_BALANCER)
                .take_link(id)?;
            let link = FdLink::try_from(link).context(
                "this kernel has no BPF links for XDP; cannot keep the program attached",
            )?;
            // The pin holds the attachment; closing our descriptor leaves it in place.
            drop(link.pin(&path).context("pinning the XDP link")?);
        }
        Ok(mode)
    }

    fn link_path(&self) -> Option<PathBuf> {
        self.pin_dir.as_ref().map(|d| d.join(LINK_PIN))
    }

    /// Puts this daemon's program into the link pinned at `path`.
    fn adopt_link(&mut self, path: &Path) -> Result<()> {
        let link = FdLink::from(PinnedLink::from_pin(path)?);
        let link = XdpLink::try_from(link)?;
        self.program_mut(program_names::LOAD_BALANCER)
            .attach_to_link(link)
            .context("replacing the program of the pinned link")?;
        Ok(())
    }

    fn attach_new(
        &mut self,
        interface: &str,
        allow_generic: bool,
    ) -> Result<(AttachMode, XdpLinkId)> {
        let ifindex = iface::index(interface)?;
        let prog = self.program_mut(program_names::LOAD_BALANCER);
        let (id, mode) = match prog.attach_to_if_index(ifindex, XdpMode::Driver) {
            Ok(id) => (id, AttachMode::Native),
            Err(e) if is_busy(&e) => {
                bail!("the XDP hook of {interface} is already in use by another program")
            }
            Err(e) if allow_generic => {
                log::warn!("native XDP on {interface} failed ({e}); falling back to generic XDP");
                let id = prog
                    .attach_to_if_index(ifindex, XdpMode::Skb)
                    .map_err(|e| busy_or(e, interface))?;
                (id, AttachMode::Generic)
            }
            Err(e) => return Err(busy_or(e, interface)),
        };
        Ok((mode, id))
    }

    /// Unloads everything and removes the pins: the program is detached and the next daemon
    /// starts from empty tables.
    pub fn unpin(self) {
        let dir = self.pin_dir.clone();
        drop(self);
        if let Some(dir) = dir {
            remove_pins(&dir);
        }
    }

    fn map(&self, name: &str) -> Result<&aya::maps::Map> {
        self.ebpf
            .map(name)
            .with_context(|| format!("map {name} missing"))
    }

    /// Kernel memory charged to map `name` in bytes (`memlock` of its descriptor).
    pub fn map_memory(&self, name: &str) -> Result<u64> {
        use std::os::fd::{AsFd, AsRawFd};
        let data = match self.map(name)? {
            aya::maps::Map::HashMap(m)
            | aya::maps::Map::Array(m)
            | aya::maps::Map::PerCpuArray(m)
            | aya::maps::Map::RingBuf(m) => m,
            _ => bail!("map {name}: unexpected map type"),
        };
        let fd = data.fd().as_fd().as_raw_fd();
        let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
        info.lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("map {name}: no memlock in fdinfo"))
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .with_context(|| format!("map {name} missing"))
    }

    fn array<T: aya::Pod>(&mut self, name: &'static str) -> Result<Array<&mut MapData, T>> {
        Array::try_from(self.map_mut(name)?).map_err(map_err(name))
    }

    fn array_ref<T: aya::Pod>(&self, name: &'static str) -> Result<Array<&MapData, T>> {
        Array::try_from(self.map(name)?).map_err(map_err(name))
    }

    fn per_cpu<T: aya::Pod>(&self, name: &'static str) -> Result<PerCpuArray<&MapData, T>> {
        PerCpuArray::try_from(self.map(name)?).map_err(map_err(name))
    }

    fn flows_map(&mut self) -> Result<HashMap<&mut MapData, FlowKey, Flow>> {
        HashMap::try_from(self.map_mut(names::FLOWS)?).map_err(map_err(names::FLOWS))
    }

    fn services_map(&mut self) -> Result<HashMap<&mut MapData, ServiceKey, Service>> {
        HashMap::try_from(self.map_mut(names::SERVICES)?).map_err(map_err(names::SERVICES))
    }

    /// Sets the source MAC of forwarded frames, and whether the program reports its decisions
    /// (see [`DataPlane::events`]).
    pub fn set_director(&mut self, mac: [u8; 6], debug: bool) -> Result<()> {
        let director = Director {
            mac,
            debug: debug.into(),
            _pad: 0,
        };
        self.array(names::DIRECTOR)?
            .set(0, director, 0)
            .map_err(map_err(names::DIRECTOR))
    }

    /// The events the program reported since the last call.
    pub fn events(&mut self) -> Result<Vec<Event>> {
        let mut ring =
            RingBuf::try_from(self.map_mut(names::EVENTS)?).map_err(map_err(names::EVENTS))?;
        let mut events = Vec::new();
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<Event>() {
                // SAFETY: the program writes whole `Event`s; read unaligned from the ring.
                events.push(unsafe { item.as_ptr().cast::<Event>().read_unaligned() });
            }
        }
        Ok(events)
    }

    /// The real server in slot `id`.
    pub fn dest(&self, id: u32) -> Result<Dest> {
        self.array_ref(names::DESTS)?
            .get(&id, 0)
            .map_err(map_err(names::DESTS))
    }

    /// Writes the real server in slot `id`.
    pub fn write_dest(&mut self, id: u32, dest: &Dest) -> Result<()> {
        self.array::<Dest>(names::DESTS)?
            .set(id, dest, 0)
            .map_err(map_err(names::DESTS))
    }

    /// Gives slot `id` to a new real server: returns the slot's next generation, and makes the
    /// slot's live connection counts start at zero.
    pub fn claim_dest(&mut self, id: u32) -> Result<u32> {
        let generation = self.dest(id)?.generation.wrapping_add(1);
        let counted_in: DestConns = self
            .array_ref(names::DEST_CONNS)?
            .get(&id, 0)
            .map_err(map_err(names::DEST_CONNS))?;
        self.array(names::DEST_RELEASED)?
            .set(id, counted_in, 0)
            .map_err(map_err(names::DEST_RELEASED))?;
        Ok(generation)
    }

    /// Writes service `svc.id`'s real server list and (for sh/dh/mh) its bucket table at
    /// `svc.table_offset` in the pool, resets its scheduler state, then writes the service
    /// itself, so that a packet sees the old service or the new one, never a half-written table.
    pub fn write_service(
        &mut self,
        key: ServiceKey,
        svc: Service,
        dest_ids: &[u32],
        table: Option<&[Option<u32>]>,
    ) -> Result<()> {
        let mut list = self.array::<u32>(names::SERVICE_DESTS)?;
        for (i, id) in dest_ids.iter().enumerate() {
            list.set(svc.dests_offset + i as u32, id, 0)
                .map_err(map_err(names::SERVICE_DESTS))?;
        }
        if let Some(table) = table {
            let mut tables = self.array::<u32>(names::SERVICE_TABLES)?;
            for (bucket, pos) in table.iter().enumerate() {
                tables
                    .set(svc.table_offset + bucket as u32, pos.unwrap_or(u32::MAX), 0)
                    .map_err(map_err(names::SERVICE_TABLES))?;
            }
        }
        self.array(names::SERVICE_SCHED)?
            .set(svc.id, SchedState::default(), 0)
            .map_err(map_err(names::SERVICE_SCHED))?;
        self.services_map()?
            .insert(key, svc, 0)
            .map_err(map_err(names::SERVICES))
    }

    fn services_ref(&self) -> Result<HashMap<&MapData, ServiceKey, Service>> {
        HashMap::try_from(self.map(names::SERVICES)?).map_err(map_err(names::SERVICES))
    }

    /// Every service key in the map.
    pub fn service_keys(&self) -> Result<Vec<ServiceKey>> {
        self.services_ref()?
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(names::SERVICES))
    }

    /// The service under `key`, if the map has it.
    pub fn service(&self, key: &ServiceKey) -> Result<Option<Service>> {
        match self.services_ref()?.get(key, 0) {
            Ok(s) => Ok(Some(s)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(names::SERVICES)(e)),
        }
    }

    /// Removes a service from the map.
    pub fn remove_service(&mut self, key: &ServiceKey) -> Result<()> {
        self.services_map()?
            .remove(key)
            .map_err(map_err(names::SERVICES))
    }

    /// Live connection counts of real server `id`.
    pub fn conns(&self, id: u32) -> Result<DestConns> {
        let counted_in: DestConns = self
            .array_ref(names::DEST_CONNS)?
            .get(&id, 0)
            .map_err(map_err(names::DEST_CONNS))?;
        let released = self
            .array_ref(names::DEST_RELEASED)?
            .get(&id, 0)
            .map_err(map_err(names::DEST_RELEASED))?;
        Ok(counted_in.minus(&released))
    }

    fn traffic(&self, name: &'static str, id: u32) -> Result<Traffic> {
        let per_cpu = self
            .per_cpu::<Traffic>(name)?
            .get(&id, 0)
            .map_err(map_err(name))?;
        Ok(per_cpu.iter().fold(Traffic::default(), |mut sum, t| {
            sum.add(t);
            sum
        }))
    }

    /// Traffic of service `id`, summed over CPUs.
    pub fn service_traffic(&self, id: u32) -> Result<Traffic> {
        self.traffic(names::SERVICE_STATS, id)
    }

    /// Traffic of real server `id`, summed over CPUs.
    pub fn dest_traffic(&self, id: u32) -> Result<Traffic> {
        self.traffic(names::DEST_STATS, id)
    }

    /// The global counters, summed over CPUs.
    pub fn globals(&self) -> Result<Vec<(Global, u64)>> {
        let map = self.per_cpu::<u64>(names::GLOBAL_STATS)?;
        Global::ALL
            .iter()
            .map(|g| {
                Ok((
                    *g,
                    map.get(&(*g as u32), 0)
                        .map_err(map_err(names::GLOBAL_STATS))?
                        .iter()
                        .sum(),
                ))
            })
            .collect()
    }

    /// Every flow in the connection table.
    pub fn flows(&mut self) -> Result<Vec<(FlowKey, Flow)>> {
        self.flows_map()?
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(names::FLOWS))
    }

    fn templates_map(&mut self) -> Result<HashMap<&mut MapData, PersistKey, Persist>> {
        HashMap::try_from(self.map_mut(names::PERSIST)?).map_err(map_err(names::PERSIST))
    }

    /// Every persistence template.
    pub fn templates(&mut self) -> Result<Vec<(PersistKey, Persist)>> {
        self.templates_map()?
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(names::PERSIST))
    }

    /// Removes a persistence template.
    pub fn remove_template(&mut self, key: &PersistKey) -> Result<()> {
        self.templates_map()?
            .remove(key)
            .map_err(map_err(names::PERSIST))
    }

    /// Removes the flows idle longer than their state's timeout at monotonic time `now_ns`,
    /// counting each out of its real server. Returns the flows that remain.
    pub fn expire(&mut self, timeouts: &Timeouts, now_ns: u64) -> Result<Vec<(FlowKey, Flow)>> {
        let (expired, live): (Vec<_>, Vec<_>) = self.flows()?.into_iter().partition(|(_, f)| {
            now_ns.saturating_sub(f.last_seen_ns)
                > u64::from(timeouts.of(f.state())) * 1_000_000_000
        });
        for (key, flow) in &expired {
            if self.flows_map()?.remove(key).is_err() {
                continue;
            }
            // A flow of an earlier holder of the slot was never counted for the current one.
            if self.dest(flow.dest)?.generation != flow.dest_generation {
                continue;
            }
            let mut released = self.array::<DestConns>(names::DEST_RELEASED)?;
            let mut r = released
                .get(&flow.dest, 0)
                .map_err(map_err(names::DEST_RELEASED))?;
            let c = r.counter_mut(flow.state().is_active());
            *c = c.wrapping_add(1);
            released
                .set(flow.dest, r, 0)
                .map_err(map_err(names::DEST_RELEASED))?;
        }
        Ok(live)
    }
}

/// Removes what a daemon pinned in `dir` (the link first, which detaches the program once no
/// daemon holds it, then the maps); whether there was anything.
pub fn remove_pins(dir: &Path) -> bool {
    let mut found = false;
    for name in std::iter::once(LINK_PIN).chain(names::ALL) {
        found |= fs::remove_file(dir.join(name)).is_ok();
    }
    let _ = fs::remove_dir(dir);
    found
}

fn is_busy(e: &ProgramError) -> bool {
    let text = format!("{e:?}");
    text.contains("Os { code: 16")
        || text.contains("Os { code: 17")
        || text.contains("EBUSY")
        || text.contains("EEXIST")
}

fn busy_or(e: ProgramError, interface: &str) -> anyhow::Error {
    if is_busy(&e) {
        anyhow::anyhow!("the XDP hook of {interface} is already in use by another program")
    } else {
        anyhow::Error::new(e).context(format!("attaching XDP to {interface}"))
    }
}

/// Monotonic time in nanoseconds, the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
