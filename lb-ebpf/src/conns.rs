//! Real servers' connection counters. DEST_CONNS is changed by every CPU at once (packets and
//! the sweeper), so each of its fields is only accessed atomically (the daemon only reads it);
//! DEST_RELEASED is written by the daemon and read here the same way.

use aya_ebpf::maps::Array;
use lb_common::{
    dest::{Dest, DestConns},
    sched,
    state::ConnState,
};

use crate::{
    maps::{DEST_CONNS, DEST_RELEASED, DESTS},
    shared::SharedU32,
};

/// The fields of a DEST_CONNS or DEST_RELEASED element.
struct Fields {
    active: SharedU32,
    inactive: SharedU32,
    overloaded: SharedU32,
}

impl Fields {
    /// The fields of element `id` of `map`.
    #[inline(always)]
    fn get(map: &Array<DestConns>, id: u32) -> Option<Self> {
        let conns = map.get_ptr_mut(id)?;
        // SAFETY: array map elements are allocated with the map and neither freed nor reused
        // while a program holding the map runs; u32 fields of the repr(C) value are 4-aligned.
        Some(unsafe {
            Self {
                active: SharedU32::at(&raw mut (*conns).active),
                inactive: SharedU32::at(&raw mut (*conns).inactive),
                overloaded: SharedU32::at(&raw mut (*conns).overloaded),
            }
        })
    }

    /// The counter a connection in `state` counts in: ActiveConn or InActConn.
    #[inline(always)]
    fn counter(&self, state: ConnState) -> SharedU32 {
        if state.is_active() {
            self.active
        } else {
            self.inactive
        }
    }

    /// A snapshot, field by field.
    #[inline(always)]
    fn load(&self) -> DestConns {
        DestConns {
            active: self.active.load(),
            inactive: self.inactive.load(),
            overloaded: self.overloaded.load(),
        }
    }
}

/// Counts a connection of real server `id` whose state went from `from` (`None`: a new
/// connection) to `to`, moving it between ActiveConn and InActConn when that changes.
#[inline(always)]
pub fn recount(id: u32, from: Option<ConnState>, to: ConnState) {
    if from.map(ConnState::is_active) == Some(to.is_active()) {
        return;
    }
    let Some(conns) = Fields::get(&DEST_CONNS, id) else {
        return;
    };
    if let Some(from) = from {
        conns.counter(from).sub(1);
    }
    conns.counter(to).add(1);
}

/// Counts out a connection in `state` of the real server that held slot `id` at `generation`,
/// unless the slot has been given to another since (its counts restarted then).
#[inline(always)]
pub fn release(id: u32, generation: u32, state: ConnState) {
    if !DESTS.get(id).is_some_and(|d| d.holds(generation)) {
        return;
    }
    if let Some(conns) = Fields::get(&DEST_CONNS, id) {
        conns.counter(state).sub(1);
    }
}

/// Real server `id`'s live connections (counted in minus counted out), with `overloaded`
/// brought up to date against `dest`'s thresholds (IPVS's hysteresis) and stored back.
#[inline(always)]
pub fn live(id: u32, dest: &Dest) -> Option<DestConns> {
    let counted = Fields::get(&DEST_CONNS, id)?;
    let released = Fields::get(&DEST_RELEASED, id)?;
    let mut live = counted.load().minus(&released.load());
    let was = live.overloaded != 0;
    let total = live.active.wrapping_add(live.inactive);
    let overloaded = sched::overloaded(was, total, dest.u_threshold, dest.l_threshold);
    if overloaded != was {
        live.overloaded = overloaded as u32;
        counted.overloaded.store(live.overloaded);
    }
    Some(live)
}
