//! The walk over a service's real servers that picks one for a new flow. It runs under
//! `bpf_loop` so that the verifier checks the body once, whatever the list length.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_loop;
use lb_common::{
    MAX_DESTS_PER_SERVICE,
    sched::{Candidate, Scheduler, Selection},
    service::Service,
};

use crate::maps::{DEST_CONNS, DEST_RELEASED, DESTS, SERVICE_DESTS, SERVICE_SCHED};

struct Walk {
    base: u32,
    count: u32,
    start: u32,
    selection: Selection,
}

/// The dest id at list position `pos` of the service whose list starts at `base`.
#[inline(always)]
fn dest_at(base: u32, pos: u32) -> Option<u32> {
    SERVICE_DESTS.get(base + pos).copied()
}

#[inline(always)]
fn candidate(dest_id: u32) -> Option<Candidate> {
    let dest = DESTS.get(dest_id)?;
    let conns = DEST_CONNS.get(dest_id)?.minus(DEST_RELEASED.get(dest_id)?);
    Some(Candidate {
        weight: dest.weight,
        active: conns.active,
        inactive: conns.inactive,
        reachable: dest.is_resolved(),
    })
}

unsafe extern "C" fn visit(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop hands back the `Walk` that `pick` passed it.
    let walk = unsafe { &mut *(ctx as *mut Walk) };
    let mut pos = walk.start + i as u32;
    if pos >= walk.count {
        pos -= walk.count;
    }
    let Some(c) = dest_at(walk.base, pos).and_then(candidate) else {
        return 0;
    };
    walk.selection.offer(pos, c) as i64
}

/// Picks a real server for a new flow of `svc`: its dest id, or `None` if none is usable.
#[inline(always)]
pub fn pick(svc: &Service) -> Option<u32> {
    let scheduler = svc.scheduler()?;
    let count = svc.dest_count;
    if count == 0 || count > MAX_DESTS_PER_SERVICE {
        return None;
    }
    let sched_state = SERVICE_SCHED.get_ptr_mut(svc.id)?;
    // SAFETY: a valid map value pointer; a racing update only changes which server rr picks.
    let last = unsafe { (*sched_state).last };
    let mut walk = Walk {
        base: svc.id * MAX_DESTS_PER_SERVICE,
        count,
        start: scheduler.first_position(count, last),
        selection: Selection::new(scheduler),
    };
    // SAFETY: `visit` has the callback signature bpf_loop expects and `walk` outlives the call.
    unsafe {
        bpf_loop(
            count,
            visit as *mut c_void,
            &mut walk as *mut Walk as *mut c_void,
            0,
        );
    }
    let pos = walk.selection.chosen()?;
    if scheduler == Scheduler::Rr {
        // SAFETY: as above.
        unsafe { (*sched_state).last = pos };
    }
    dest_at(walk.base, pos)
}
