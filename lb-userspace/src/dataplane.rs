//! The loaded XDP programs (the balancer and its sweeper) and typed access to their maps. The
//! daemon is their only writer.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, IterableMap, MapData, MapError, PerCpuArray, ProgramArray, RingBuf},
    programs::{
        ProgramError, TestRun, TestRunOptions, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
    sys::{NetlinkError, SyscallError},
};
use lb_common::{
    config::Director,
    dest::{Dest, DestConns},
    event::Event,
    expiry::TemplateRule,
    flow::{Flow, FlowKey, Persist, PersistKey},
    map_names as names, program_names,
    sched::locality::{Locality, LocalityKey},
    service::{SchedState, Service, ServiceKey},
    state::{STATE_COUNT, Timeouts},
    stats::{Global, Traffic},
};

use crate::{EBPF_OBJECT, iface, maps::Maps};

mod batch;

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

/// The maps of the loaded object, taken once at load.
struct MapSet {
    services: HashMap<MapData, ServiceKey, Service>,
    lists: Array<MapData, u32>,
    sched: Array<MapData, SchedState>,
    tables: Array<MapData, u32>,
    dests: Array<MapData, Dest>,
    counted_in: Array<MapData, DestConns>,
    released: Array<MapData, DestConns>,
    flows: HashMap<MapData, FlowKey, Flow>,
    templates: HashMap<MapData, PersistKey, Persist>,
    timeouts: Array<MapData, Timeouts>,
    template_rules: Array<MapData, TemplateRule>,
    localities: HashMap<MapData, LocalityKey, Locality>,
    service_stats: PerCpuArray<MapData, Traffic>,
    dest_stats: PerCpuArray<MapData, Traffic>,
    globals: PerCpuArray<MapData, u64>,
    director: Array<MapData, Director>,
    events: RingBuf<MapData>,
}

impl MapSet {
    fn take(ebpf: &mut Ebpf) -> Result<Self> {
        fn take<M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
            ebpf: &mut Ebpf,
            name: &str,
        ) -> Result<M> {
            let map = ebpf
                .take_map(name)
                .with_context(|| format!("map {name} missing"))?;
            M::try_from(map).with_context(|| format!("map {name}"))
        }
        Ok(Self {
            services: take(ebpf, names::SERVICES)?,
            lists: take(ebpf, names::SERVICE_DESTS)?,
            sched: take(ebpf, names::SERVICE_SCHED)?,
            tables: take(ebpf, names::SERVICE_TABLES)?,
            dests: take(ebpf, names::DESTS)?,
            counted_in: take(ebpf, names::DEST_CONNS)?,
            released: take(ebpf, names::DEST_RELEASED)?,
            flows: take(ebpf, names::FLOWS)?,
            templates: take(ebpf, names::PERSIST)?,
            timeouts: take(ebpf, names::TIMEOUTS)?,
            template_rules: take(ebpf, names::TEMPLATE_RULES)?,
            localities: take(ebpf, names::LOCALITY)?,
            service_stats: take(ebpf, names::SERVICE_STATS)?,
            dest_stats: take(ebpf, names::DEST_STATS)?,
            globals: take(ebpf, names::GLOBAL_STATS)?,
            director: take(ebpf, names::DIRECTOR)?,
            events: take(ebpf, names::EVENTS)?,
        })
    }
}

/// The loaded object and its maps. Without a pin directory an attachment lasts as long as the
/// object; with one it is a pinned link that outlives it.
pub struct DataPlane {
    ebpf: Ebpf,
    maps: MapSet,
    pin_dir: Option<PathBuf>,
}

/// How often a program load the verifier gave up on because of a signal is tried again.
const LOAD_RETRIES: u32 = 4;

/// Names a failed map operation.
fn map_err(name: &str) -> impl FnOnce(aya::maps::MapError) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("map {name}: {e}")
}

impl DataPlane {
    /// Loads the programs with a connection table of `max_flows` entries and a persistence
    /// template table of `max_templates`. With `pin_dir`, every map is pinned there, and maps
    /// already pinned there are reused with their contents. A new timeout map starts at IPVS's
    /// defaults.
    pub fn load(pin_dir: Option<&Path>, max_flows: u32, max_templates: u32) -> Result<Self> {
        if EBPF_OBJECT.is_empty() {
            bail!(
                "this binary was built without its XDP object: build it with `cargo xtask build`"
            );
        }
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(names::FLOWS, max_flows);
        loader.map_max_entries(names::PERSIST, max_templates);
        if let Some(dir) = pin_dir {
            iface::ensure_bpffs(dir)?;
            for name in names::ALL {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(EBPF_OBJECT).context("loading the XDP object")?;
        for name in [
            program_names::LOAD_BALANCER,
            program_names::LOAD_BALANCER_V6,
            program_names::EXPIRE,
        ] {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing"))?
                .try_into()?;
            // The verifier gives up with EAGAIN when a signal (a child's SIGCHLD, say) reaches
            // the thread during its pass, which takes seconds on a busy machine; libbpf tries
            // again too.
            let mut retries = LOAD_RETRIES;
            loop {
                match prog.load() {
                    Err(ProgramError::LoadError { io_error, .. })
                        if io_error.kind() == io::ErrorKind::WouldBlock && retries > 0 =>
                    {
                        retries -= 1;
                    }
                    loaded => break loaded,
                }
            }
            .with_context(|| format!("loading program {name} (verifier)"))?;
        }
        let v6: &Xdp = ebpf
            .program(program_names::LOAD_BALANCER_V6)
            .context("the IPv6 program missing")?
            .try_into()?;
        let v6 = v6.fd()?.try_clone()?;
        let mut families: ProgramArray<_> = ebpf
            .map_mut(names::FAMILIES)
            .context("map FAMILIES missing")?
            .try_into()?;
        families
            .set(program_names::IPV6_SLOT, &v6, 0)
            .map_err(map_err(names::FAMILIES))?;
        let mut maps = MapSet::take(&mut ebpf)?;
        let timeouts = maps.timeouts.get(&0, 0).map_err(map_err(names::TIMEOUTS))?;
        if timeouts.0 == [0; STATE_COUNT] {
            maps.timeouts
                .set(0, Timeouts::default(), 0)
                .map_err(map_err(names::TIMEOUTS))?;
        }
        Ok(Self {
            maps,
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

    /// Kernel memory charged to the connection table and the persistence templates, in bytes
    /// (`memlock` of their descriptors).
    pub fn flow_memory(&self) -> Result<u64> {
        use std::os::fd::{AsFd, AsRawFd};
        let mut total = 0;
        for (name, data) in [
            (names::FLOWS, self.maps.flows.map()),
            (names::PERSIST, self.maps.templates.map()),
        ] {
            let fd = data.fd().as_fd().as_raw_fd();
            let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
            total += info
                .lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .with_context(|| format!("map {name}: no memlock in fdinfo"))?;
        }
        Ok(total)
    }
}

/// The sum over CPUs of entry `id` of a per-CPU traffic map.
fn traffic_sum(map: &PerCpuArray<MapData, Traffic>, name: &str, id: u32) -> Result<Traffic> {
    Ok(sum(&map.get(&id, 0).map_err(map_err(name))?))
}

/// The sum of one entry's per-CPU traffic values.
fn sum(per_cpu: &[Traffic]) -> Traffic {
    per_cpu.iter().fold(Traffic::default(), |mut sum, t| {
        sum.add(t);
        sum
    })
}

/// Names a failed batch operation.
fn batch_err(name: &str) -> impl FnOnce(io::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("map {name}: {e}")
}

/// The entries from `offset` on of an array map of `len` entries.
fn indices(offset: u32, len: usize) -> Vec<u32> {
    (offset..).take(len).collect()
}

/// Whether a lookup found nothing.
fn missing<T>(r: Result<T, MapError>, name: &str) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(map_err(name)(e)),
    }
}

impl Maps for DataPlane {
    fn set_director(&mut self, mac: [u8; 6], debug: bool) -> Result<()> {
        let director = Director {
            mac,
            debug: debug.into(),
            _pad: 0,
        };
        self.maps
            .director
            .set(0, director, 0)
            .map_err(map_err(names::DIRECTOR))
    }

    fn dest(&self, id: u32) -> Result<Dest> {
        self.maps.dests.get(&id, 0).map_err(map_err(names::DESTS))
    }

    fn write_dest(&mut self, id: u32, dest: &Dest) -> Result<()> {
        self.maps
            .dests
            .set(id, dest, 0)
            .map_err(map_err(names::DESTS))
    }

    fn counted_in(&self, id: u32) -> Result<DestConns> {
        self.maps
            .counted_in
            .get(&id, 0)
            .map_err(map_err(names::DEST_CONNS))
    }

    fn released(&self, id: u32) -> Result<DestConns> {
        self.maps
            .released
            .get(&id, 0)
            .map_err(map_err(names::DEST_RELEASED))
    }

    fn write_released(&mut self, id: u32, released: &DestConns) -> Result<()> {
        self.maps
            .released
            .set(id, released, 0)
            .map_err(map_err(names::DEST_RELEASED))
    }

    fn dests_at(&self, ids: &[u32]) -> Result<Vec<Dest>> {
        batch::lookup(&self.maps.dests, ids).map_err(batch_err(names::DESTS))
    }

    fn write_dests_at(&mut self, ids: &[u32], dests: &[Dest]) -> Result<()> {
        batch::update(&self.maps.dests, ids, dests).map_err(batch_err(names::DESTS))
    }

    fn counted_in_at(&self, ids: &[u32]) -> Result<Vec<DestConns>> {
        batch::lookup(&self.maps.counted_in, ids).map_err(batch_err(names::DEST_CONNS))
    }

    fn released_at(&self, ids: &[u32]) -> Result<Vec<DestConns>> {
        batch::lookup(&self.maps.released, ids).map_err(batch_err(names::DEST_RELEASED))
    }

    fn write_released_at(&mut self, ids: &[u32], released: &[DestConns]) -> Result<()> {
        batch::update(&self.maps.released, ids, released).map_err(batch_err(names::DEST_RELEASED))
    }

    fn write_list(&mut self, offset: u32, ids: &[u32]) -> Result<()> {
        batch::update(&self.maps.lists, &indices(offset, ids.len()), ids)
            .map_err(batch_err(names::SERVICE_DESTS))
    }

    fn write_table(&mut self, offset: u32, buckets: &[u32]) -> Result<()> {
        batch::update(&self.maps.tables, &indices(offset, buckets.len()), buckets)
            .map_err(batch_err(names::SERVICE_TABLES))
    }

    fn sched(&self, id: u32) -> Result<SchedState> {
        self.maps
            .sched
            .get(&id, 0)
            .map_err(map_err(names::SERVICE_SCHED))
    }

    fn write_sched(&mut self, id: u32, state: &SchedState) -> Result<()> {
        self.maps
            .sched
            .set(id, state, 0)
            .map_err(map_err(names::SERVICE_SCHED))
    }

    fn service(&self, key: &ServiceKey) -> Result<Option<Service>> {
        missing(self.maps.services.get(key, 0), names::SERVICES)
    }

    fn service_keys(&self) -> Result<Vec<ServiceKey>> {
        self.maps
            .services
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(names::SERVICES))
    }

    fn write_service(&mut self, key: &ServiceKey, svc: &Service) -> Result<()> {
        self.maps
            .services
            .insert(key, svc, 0)
            .map_err(map_err(names::SERVICES))
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<()> {
        self.maps
            .services
            .remove(key)
            .map_err(map_err(names::SERVICES))
    }

    fn flows(&self) -> Result<Vec<(FlowKey, Flow)>> {
        self.maps
            .flows
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(names::FLOWS))
    }

    fn templates(&self) -> Result<Vec<(PersistKey, Persist)>> {
        self.maps
            .templates
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(names::PERSIST))
    }

    fn write_timeouts(&mut self, timeouts: &Timeouts) -> Result<()> {
        self.maps
            .timeouts
            .set(0, timeouts, 0)
            .map_err(map_err(names::TIMEOUTS))
    }

    fn write_template_rule(&mut self, id: u32, rule: &TemplateRule) -> Result<()> {
        self.maps
            .template_rules
            .set(id, rule, 0)
            .map_err(map_err(names::TEMPLATE_RULES))
    }

    fn expire(&mut self) -> Result<()> {
        // The sweeper ignores its frame; BPF_PROG_TEST_RUN wants one of Ethernet size or more.
        let frame = [0u8; 64];
        let opts = TestRunOptions {
            data_in: Some(&frame),
            ..TestRunOptions::default()
        };
        self.program(program_names::EXPIRE)
            .test_run(opts)
            .context("running the sweeper")?;
        Ok(())
    }

    fn localities(&self) -> Result<Vec<(LocalityKey, Locality)>> {
        self.maps
            .localities
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(names::LOCALITY))
    }

    fn remove_locality(&mut self, key: &LocalityKey) -> Result<()> {
        missing(self.maps.localities.remove(key), names::LOCALITY).map(drop)
    }

    fn service_traffic(&self, id: u32) -> Result<Traffic> {
        traffic_sum(&self.maps.service_stats, names::SERVICE_STATS, id)
    }

    fn dest_traffic(&self, id: u32) -> Result<Traffic> {
        traffic_sum(&self.maps.dest_stats, names::DEST_STATS, id)
    }

    fn dest_traffic_at(&self, ids: &[u32]) -> Result<Vec<Traffic>> {
        let (cpus, per_cpu) = batch::lookup_per_cpu(&self.maps.dest_stats, ids)
            .map_err(batch_err(names::DEST_STATS))?;
        Ok(per_cpu.chunks_exact(cpus).map(sum).collect())
    }

    fn globals(&self) -> Result<Vec<(Global, u64)>> {
        Global::ALL
            .iter()
            .map(|g| {
                let per_cpu = self
                    .maps
                    .globals
                    .get(&(*g as u32), 0)
                    .map_err(map_err(names::GLOBAL_STATS))?;
                Ok((*g, per_cpu.iter().sum()))
            })
            .collect()
    }

    fn events(&mut self) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        while let Some(item) = self.maps.events.next() {
            if item.len() >= size_of::<Event>() {
                // SAFETY: the program writes whole `Event`s; read unaligned from the ring.
                events.push(unsafe { item.as_ptr().cast::<Event>().read_unaligned() });
            }
        }
        Ok(events)
    }

    fn synchronize(&mut self) -> Result<()> {
        // MEMBARRIER_CMD_GLOBAL returns after synchronize_rcu(): every XDP program run that
        // started before it (they run inside RCU read-side sections) has finished.
        const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
        // SAFETY: membarrier takes two integers and touches no memory of ours.
        let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
        if r != 0 {
            bail!(
                "membarrier (waiting for packets in flight): {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
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

/// The errno behind an aya program error, wherever in its chain it is.
fn errno(e: &ProgramError) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(n) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .or_else(|| err.downcast_ref::<NetlinkError>()?.raw_os_error())
            .or_else(|| err.downcast_ref::<SyscallError>()?.io_error.raw_os_error())
        {
            return Some(n);
        }
        cur = err.source();
    }
    None
}

/// Whether attaching failed because another program holds the hook.
fn is_busy(e: &ProgramError) -> bool {
    matches!(errno(e), Some(libc::EBUSY | libc::EEXIST))
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
