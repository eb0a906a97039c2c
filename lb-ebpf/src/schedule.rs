//! The data path's side of scheduling: the service's real servers read from the maps, walked
//! under `bpf_loop` so that the verifier checks the walk once, whatever the list length.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_loop;
use lb_common::{
    MAX_DESTS_PER_SERVICE,
    dest::DestConns,
    flow::{Persist, PersistKey},
    sched::{self, Addresses, Candidate, Params, Servers},
    service::Service,
};

use crate::maps::{
    DEST_CONNS, DEST_RELEASED, DESTS, PERSIST, SERVICE_DESTS, SERVICE_SCHED, SERVICE_TABLES,
};

/// One service's list, table half and real servers, as the maps hold them.
struct MapServers {
    base: u32,
    table_offset: u32,
    table_size: u32,
    count: u32,
}

impl MapServers {
    #[inline(always)]
    fn dest_id(&self, pos: u32) -> Option<u32> {
        if pos >= self.count {
            return None;
        }
        SERVICE_DESTS.get(self.base + pos).copied()
    }
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
        let id = self.dest_id(pos)?;
        let dest = DESTS.get(id)?;
        let conns_ptr = DEST_CONNS.get_ptr_mut(id)?;
        // SAFETY: a map value pointer; the overload flag is only written here.
        let conns: &mut DestConns = unsafe { &mut *conns_ptr };
        let live = conns.minus(DEST_RELEASED.get(id)?);
        let total = live.active.wrapping_add(live.inactive);
        let overloaded = sched::overloaded(
            conns.overloaded != 0,
            total,
            dest.u_threshold,
            dest.l_threshold,
        );
        if overloaded != (conns.overloaded != 0) {
            conns.overloaded = overloaded as u32;
        }
        Some(Candidate {
            weight: dest.weight,
            active: live.active,
            inactive: live.inactive,
            reachable: dest.is_resolved() && !overloaded,
        })
    }

    #[inline(always)]
    fn bucket(&self, bucket: u32) -> Option<u32> {
        if bucket >= self.table_size {
            return None;
        }
        let pos = *SERVICE_TABLES.get(self.table_offset.wrapping_add(bucket))?;
        (pos != u32::MAX).then_some(pos)
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

/// The real server for a new flow of `svc` from client `src_be` (network order): the one of
/// the client's persistence template while it is usable, else the scheduler's pick (which a
/// persistent service then records as the client's template).
#[inline(always)]
pub fn assign(svc: &Service, pkt: &Addresses, src_be: u32, now: u64) -> Option<u32> {
    let persistent = svc.persist_timeout != 0;
    let key = PersistKey {
        service: svc.id,
        client: src_be & svc.persist_mask,
    };
    if persistent && let Some(t) = PERSIST.get_ptr_mut(key) {
        // SAFETY: a map value pointer; only this program writes templates.
        let t = unsafe { &mut *t };
        let usable = DESTS
            .get(t.dest)
            .is_some_and(|d| d.generation == t.dest_generation && d.weight > 0 && d.is_resolved());
        if usable {
            t.last_used_ns = now;
            return Some(t.dest);
        }
    }
    let dest = pick(svc, pkt)?;
    if persistent {
        let template = Persist {
            last_used_ns: now,
            dest,
            dest_generation: DESTS.get(dest)?.generation,
        };
        // A full template table only costs stickiness: the flow is still forwarded.
        let _ = PERSIST.insert(key, template, 0);
    }
    Some(dest)
}

/// Picks a real server for a new flow of `svc`: its dest id, or `None` if none is usable.
#[inline(always)]
fn pick(svc: &Service, pkt: &Addresses) -> Option<u32> {
    let scheduler = svc.scheduler()?;
    if svc.dest_count > MAX_DESTS_PER_SERVICE {
        return None;
    }
    let servers = MapServers {
        base: svc.dests_offset,
        table_offset: svc.table_offset,
        table_size: svc.table_size,
        count: svc.dest_count,
    };
    let params = Params {
        scheduler,
        flags: svc.flags,
        max_weight: svc.max_weight,
        weight_gcd: svc.weight_gcd,
        table_size: svc.table_size,
    };
    let state = SERVICE_SCHED.get_ptr_mut(svc.id)?;
    // SAFETY: a map value pointer; racing CPUs only change which server rr/wrr picks next.
    let pos = sched::pick(&params, unsafe { &mut *state }, pkt, &servers)?;
    servers.dest_id(pos)
}
