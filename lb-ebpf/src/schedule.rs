//! The data path's side of scheduling: the service's real servers read from the maps, walked
//! under `bpf_loop` so that the verifier checks the walk once, whatever the list length.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_EXIST, BPF_NOEXIST},
    helpers::generated::{bpf_get_prandom_u32, bpf_loop},
};
use lb_common::{
    MAX_DESTS_PER_SERVICE,
    addr::Addr,
    flow::{FlowKey, Persist, PersistKey},
    sched::{
        self, Addresses, Candidate, Params, Scheduler, Servers,
        locality::{self, Locality, LocalityKey},
    },
    service::{SchedState, Service},
};

use crate::{
    conns,
    conntrack::EEXIST,
    maps::{
        DESTS, LOCALITY, LOCALITY_SCRATCH, PERSIST, SERVICE_DESTS, SERVICE_SCHED, SERVICE_TABLES,
    },
    shared::{SharedU32, SharedU64},
    stamp::Stamp,
};

/// One service's list and table half, as the maps hold them.
struct MapServers {
    base: u32,
    table_offset: u32,
    table_size: u32,
    count: u32,
}

/// What the scheduler needs to know about real server `id`.
#[inline(always)]
fn candidate(id: u32) -> Option<Candidate> {
    let dest = DESTS.get(id)?;
    let live = conns::live(id, dest)?;
    Some(Candidate {
        id,
        weight: dest.weight,
        active: live.active,
        inactive: live.inactive,
        reachable: dest.is_resolved() && live.overloaded == 0,
    })
}

/// Calls the closure behind `ctx` with the loop index; non-zero stops the loop.
unsafe extern "C" fn trampoline<F: FnMut(u32) -> bool>(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `each` passes a pointer to its `F`, alive for the whole bpf_loop call.
    let f = unsafe { &mut *(ctx as *mut F) };
    // The verifier needs to see a return value in [0, 1]; LLVM would drop a plain mask on a
    // bool, so the value goes through black_box first.
    core::hint::black_box(f(i as u32) as i64) & 1
}

impl Servers for MapServers {
    #[inline(always)]
    fn count(&self) -> u32 {
        self.count
    }

    #[inline(always)]
    fn candidate(&self, pos: u32) -> Option<Candidate> {
        if pos >= self.count {
            return None;
        }
        candidate(*SERVICE_DESTS.get(self.base.wrapping_add(pos))?)
    }

    #[inline(always)]
    fn bucket(&self, bucket: u32) -> Option<Candidate> {
        if bucket >= self.table_size {
            return None;
        }
        let id = *SERVICE_TABLES.get(self.table_offset.wrapping_add(bucket))?;
        if id == u32::MAX {
            return None;
        }
        candidate(id)
    }

    #[inline(always)]
    fn generation(&self, id: u32) -> Option<u32> {
        Some(DESTS.get(id)?.generation)
    }

    #[inline(always)]
    fn member(&self, id: u32, generation: u32) -> Option<Candidate> {
        if !DESTS.get(id)?.holds(generation) {
            return None;
        }
        candidate(id)
    }

    #[inline(always)]
    fn each<F: FnMut(u32) -> bool>(&self, n: u32, mut f: F) {
        // SAFETY: the callback has bpf_loop's signature and `f` outlives the call.
        unsafe {
            bpf_loop(
                n,
                trampoline::<F> as *mut c_void,
                &mut f as *mut F as *mut c_void,
                0,
            );
        }
    }
}

/// The addresses a scheduler sees for flow `key`, in host byte order.
#[inline(always)]
pub fn addresses(key: &FlowKey) -> Addresses {
    Addresses {
        src_addr: key.src_addr.fold(),
        src_port: u16::from_be(key.src_port),
        dst_addr: key.dst_addr.fold(),
    }
}

/// The real server for a new flow `key` of `svc`: the one of the client's persistence
/// template while it is usable (weight 0 included: IPVS's `ip_vs_check_template` with
/// `expire_quiescent_template` off), else the scheduler's pick (which a persistent service then
/// records as the client's template).
#[inline(always)]
pub fn assign(svc: &Service, flow: &FlowKey, now: u64) -> Option<u32> {
    let persistent = svc.persist_timeout != 0;
    let key = template_key(svc, flow);
    let replace = match persistent.then(|| template_dest(&key, now)) {
        Some(Template::Usable(dest)) => return Some(dest),
        Some(Template::Unusable(stamp)) => stamp.claim(stamp.load()),
        Some(Template::Missing) | None => false,
    };
    let dest = pick(svc, flow, now)?;
    if !persistent {
        return Some(dest);
    }
    let template = Persist {
        last_used_ns: now,
        dest,
        dest_generation: DESTS.get(dest)?.generation,
        ..Persist::default()
    };
    // Only a missing template is filled, so that of CPUs racing on a client's first packets
    // one choice wins and the others follow it; an unusable one only by the CPU that claimed
    // it.
    let flags = if replace { BPF_EXIST } else { BPF_NOEXIST };
    match PERSIST.insert(key, template, flags.into()) {
        Err(e) if -e == EEXIST => match template_dest(&key, now) {
            Template::Usable(winner) => Some(winner),
            Template::Unusable(_) | Template::Missing => Some(dest),
        },
        // A full template table only costs stickiness: the flow is still forwarded.
        _ => Some(dest),
    }
}

/// The key of the persistence template of `flow`'s client in `svc`.
#[inline(always)]
fn template_key(svc: &Service, flow: &FlowKey) -> PersistKey {
    PersistKey {
        service: svc.id,
        client: flow.src_addr.masked(&svc.persist_mask),
    }
}

/// Marks the template of `flow`'s client assured, as IPVS marks a connection's template when
/// the connection becomes ESTABLISHED (`ip_vs_control_assure_ct`): `-Lnc` lists it ASSURED.
/// Out of line: its key is built in its own frame, not in the program's, whose stack the
/// deepest scheduler call chain adds to.
#[inline(never)]
pub fn assure_template(svc: &Service, flow: &FlowKey) {
    if svc.persist_timeout == 0 {
        return;
    }
    if let Some(t) = PERSIST.get_ptr_mut(template_key(svc, flow)) {
        // SAFETY: a PERSIST element, valid memory for this run and never reused for another
        // client's template while it runs (see `template_dest`), its field 4-aligned.
        unsafe { SharedU32::at(&raw mut (*t).assured) }.store(1);
    }
}

/// A client's persistence template, as a new flow sees it.
enum Template {
    /// Its server takes new flows: this one.
    Usable(u32),
    /// Its server left or has no MAC: the template's time of last use, to claim it for
    /// replacement.
    Unusable(Stamp),
    /// None, or one claimed for removal.
    Missing,
}

/// The template under `key`; a usable one is marked used at `now`.
#[inline(always)]
fn template_dest(key: &PersistKey, now: u64) -> Template {
    let Some(t) = PERSIST.get_ptr_mut(key) else {
        return Template::Missing;
    };
    // SAFETY: PERSIST is not preallocated: an element removed (by the sweeper) or replaced (by
    // another CPU) is freed only after an RCU grace period, which this run is inside. Its
    // fixed fields are written before it is linked; its time is 8-aligned and only accessed
    // through the stamp.
    let (dest, generation, stamp) = unsafe {
        (
            (*t).dest,
            (*t).dest_generation,
            Stamp::at(&raw mut (*t).last_used_ns),
        )
    };
    let usable = DESTS
        .get(dest)
        .is_some_and(|d| d.holds(generation) && d.is_resolved());
    if !usable {
        return Template::Unusable(stamp);
    }
    if !stamp.refresh(now) {
        return Template::Missing;
    }
    Template::Usable(dest)
}

/// Picks a real server for a new flow of `svc`: its dest id, or `None` if none is usable.
///
/// lblc, lblcr and the other schedulers each run in a BPF function of their own. The verifier
/// adds the frames of a call chain (the program, a pick, a `bpf_loop` callback) up against
/// 512 bytes; one function for all would carry the largest locals of every scheduler at once.
#[inline(always)]
fn pick(svc: &Service, flow: &FlowKey, now: u64) -> Option<u32> {
    let id = match svc.scheduler()? {
        Scheduler::Lblc => lblc_id(svc, &flow.dst_addr, now),
        Scheduler::Lblcr => lblcr_id(svc, &flow.dst_addr, now),
        _ => uncached_id(svc, &addresses(flow)),
    };
    (id != NO_DEST).then_some(id)
}

/// Picks a real server for `pkt` with `svc`'s scheduler, which must keep no cache (every
/// scheduler but lblc and lblcr): its dest id, or `None` if none is usable.
#[inline(always)]
pub fn pick_uncached(svc: &Service, pkt: &Addresses) -> Option<u32> {
    let id = uncached_id(svc, pkt);
    (id != NO_DEST).then_some(id)
}

/// What the BPF functions below return when no server is usable (never a dest id).
const NO_DEST: u32 = u32::MAX;

/// `svc`'s list of servers, `None` if it claims more than [`MAX_DESTS_PER_SERVICE`].
#[inline(always)]
fn servers(svc: &Service) -> Option<MapServers> {
    (svc.dest_count <= MAX_DESTS_PER_SERVICE).then_some(MapServers {
        base: svc.dests_offset,
        table_offset: svc.table_offset,
        table_size: svc.table_size,
        count: svc.dest_count,
    })
}

/// lblc's pick as a BPF function (see [`pick`]). A BPF function returns one register, so the
/// answer is a plain u32.
#[inline(never)]
fn lblc_id(svc: &Service, dst: &Addr, now: u64) -> u32 {
    pick_local(Scheduler::Lblc, svc, dst, now).unwrap_or(NO_DEST)
}

/// lblcr, as [`lblc_id`].
#[inline(never)]
fn lblcr_id(svc: &Service, dst: &Addr, now: u64) -> u32 {
    pick_local(Scheduler::Lblcr, svc, dst, now).unwrap_or(NO_DEST)
}

/// The pick of every scheduler without a cache, as one BPF function for its two callers (new
/// flows and ICMP errors) instead of a copy of every scheduler in each.
#[inline(never)]
fn uncached_id(svc: &Service, pkt: &Addresses) -> u32 {
    uncached(svc, pkt).unwrap_or(NO_DEST)
}

#[inline(always)]
fn uncached(svc: &Service, pkt: &Addresses) -> Option<u32> {
    let scheduler = svc.scheduler()?;
    let servers = servers(svc)?;
    let params = Params {
        scheduler,
        flags: svc.flags,
        max_weight: svc.max_weight,
        weight_gcd: svc.weight_gcd,
        table_size: svc.table_size,
    };
    let sched_state = SERVICE_SCHED.get_ptr_mut(svc.id)?;
    // SAFETY: an array map element, neither freed nor reused while the program runs, with
    // 4-aligned fields. Every CPU loads and stores them whole (the daemon moves the value on
    // when it rewrites the service); the pick in between is not atomic, so CPUs scheduling at the
    // same moment may both take the same next server: rr and wrr follow IPVS's sequence on one
    // CPU and approximate it across CPUs.
    let (last, cw) = unsafe {
        (
            SharedU32::at(&raw mut (*sched_state).last),
            SharedU32::at(&raw mut (*sched_state).cw),
        )
    };
    let before = SchedState {
        last: last.load(),
        cw: cw.load(),
    };
    let mut state = before;
    let id = sched::pick(&params, &mut state, pkt, &servers, random_below)?;
    if state.last != before.last {
        last.store(state.last);
    }
    if state.cw != before.cw {
        cw.store(state.cw);
    }
    Some(id)
}

/// A uniformly random number below `bound` (twos), by multiply and shift as the kernel's
/// `get_random_u32_below`, without its rejection of the slight bias.
#[inline(always)]
fn random_below(bound: u32) -> u32 {
    // SAFETY: a helper without arguments.
    let r = unsafe { bpf_get_prandom_u32() };
    ((u64::from(r) * u64::from(bound)) >> 32) as u32
}

/// lblc or lblcr through the destination's entry in LOCALITY: a changed entry is written
/// whole, an unchanged one only marked used.
#[inline(always)]
fn pick_local(scheduler: Scheduler, svc: &Service, dst: &Addr, now: u64) -> Option<u32> {
    let servers = servers(svc)?;
    let key = LocalityKey {
        service: svc.id,
        addr: *dst,
    };
    let found = LOCALITY.get_ptr_mut(key);
    let scratch = LOCALITY_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's own scratch slot, which nothing else uses while the program runs.
    let entry = unsafe { &mut *scratch };
    *entry = match found {
        // SAFETY: LOCALITY is not preallocated: an entry another CPU replaces is freed only
        // after an RCU grace period, which this run is inside, so the copy is one whole entry
        // (but for `last_used_ns`, which CPUs store in place).
        Some(e) => unsafe { e.read_volatile() },
        None => Locality::default(),
    };
    let outcome = match scheduler {
        Scheduler::Lblcr => locality::lblcr(entry, now, &servers),
        _ => locality::lblc(entry, now, &servers),
    };
    match found {
        // A full cache only costs locality: the flow is still scheduled.
        _ if outcome.changed => {
            let _ = LOCALITY.insert(key, entry, BPF_ANY.into());
        }
        // SAFETY: as above; the field is 8-aligned.
        Some(e) => unsafe { SharedU64::at(&raw mut (*e).last_used_ns) }.store(now),
        None => {}
    }
    outcome.dest
}
