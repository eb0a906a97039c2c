//! The sweeper: a second program in the object, which the daemon runs once a second with
//! BPF_PROG_TEST_RUN (its frame is ignored). It walks FLOWS, removing each flow idle past its
//! state's timeout and counting it out of its real server, then PERSIST, removing each
//! template idle past its service's persistence timeout. A live flow of a persistent service
//! marks its client's template used, so that a template expires its timeout after its last
//! flow ended, as IPVS's does. Every removal claims the entry first (see [`Stamp`]).

use core::ffi::c_void;

use aya_ebpf::{
    bindings::xdp_action::XDP_PASS,
    helpers::generated::{bpf_for_each_map_elem, bpf_ktime_get_ns},
    macros::xdp,
    programs::XdpContext,
};
use lb_common::{
    addr::Addr,
    expiry,
    flow::{Flow, FlowKey, Persist, PersistKey},
    state::Timeouts,
};

use crate::{
    conns,
    maps::{FLOWS, PERSIST, TEMPLATE_RULES, TIMEOUTS},
    shared::SharedU32,
    stamp::Stamp,
};

#[xdp]
pub fn xdpvs_expire(_ctx: XdpContext) -> u32 {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(timeouts) = TIMEOUTS.get(0) {
        let mut walk = FlowWalk {
            now,
            timeouts: *timeouts,
        };
        // SAFETY: FLOWS's callback has the signature for its key and value types.
        unsafe { for_each(&raw const FLOWS as *mut c_void, expire_flow as _, &mut walk) };
    }
    let mut now = now;
    // SAFETY: PERSIST's callback has the signature for its key and value types.
    unsafe {
        for_each(
            &raw const PERSIST as *mut c_void,
            expire_template as _,
            &mut now,
        )
    };
    XDP_PASS
}

/// What the FLOWS walk carries.
struct FlowWalk {
    now: u64,
    timeouts: Timeouts,
}

/// Calls `callback` on every element of `map` with `ctx`.
///
/// # Safety
/// `map` is one of the object's map statics (each is its map definition, which is what a map
/// helper takes) and `callback` takes its key and value types and `C`.
#[inline(always)]
unsafe fn for_each<C>(map: *mut c_void, callback: *mut c_void, ctx: &mut C) {
    // SAFETY: the caller's guarantee; `ctx` outlives the call.
    unsafe { bpf_for_each_map_elem(map, callback, ctx as *mut C as *mut c_void, 0) };
}

/// Removes flow `key` if it is idle past its timeout; otherwise marks its template used.
/// Returns 0: the walk goes on.
unsafe extern "C" fn expire_flow(
    _map: *mut c_void,
    key: *const FlowKey,
    flow: *mut Flow,
    walk: *mut FlowWalk,
) -> i64 {
    // SAFETY: the walk's context, alive for the whole walk.
    let walk = unsafe { &*walk };
    // SAFETY: the element's key and value, valid memory for the whole walk (the value is
    // 8-aligned); its fixed fields are written before it is linked, its changing ones are only
    // accessed atomically (see conntrack).
    let (key, stamp, state, dest, generation, service) = unsafe {
        (
            &*key,
            Stamp::at(&raw mut (*flow).last_seen_ns),
            SharedU32::at(&raw mut (*flow).state),
            (*flow).dest,
            (*flow).dest_generation,
            (*flow).service,
        )
    };
    let seen = stamp.load();
    let timeout = walk.timeouts.of(Flow::decode_state(state.load()));
    if !expiry::expired(seen, walk.now, timeout) {
        mark_template(service, &key.src_addr, walk.now);
        return 0;
    }
    // A packet since `seen` keeps the flow; once claimed, its state no longer changes.
    if stamp.claim(seen) {
        conns::release(dest, generation, Flow::decode_state(state.load()));
        let _ = FLOWS.remove(key);
    }
    0
}

/// Marks the template that controls a live flow of `service` from `src_addr` used at `now`.
#[inline(always)]
fn mark_template(service: u32, src_addr: &Addr, now: u64) {
    let Some(template) = TEMPLATE_RULES
        .get(service)
        .and_then(|rule| rule.template(service, src_addr))
    else {
        return;
    };
    if let Some(t) = PERSIST.get_ptr_mut(template) {
        // SAFETY: PERSIST is not preallocated: the element stays valid memory for this run;
        // its time is 8-aligned and only accessed through the stamp. A claimed template is
        // left to its claimer.
        unsafe { Stamp::at(&raw mut (*t).last_used_ns) }.refresh(now);
    }
}

/// Removes template `key` if it is idle past its service's persistence timeout (at once if
/// the service is no longer persistent). Returns 0: the walk goes on.
unsafe extern "C" fn expire_template(
    _map: *mut c_void,
    key: *const PersistKey,
    template: *mut Persist,
    now: *mut u64,
) -> i64 {
    // SAFETY: the element's key and the walk's context, valid for the whole walk; the value is
    // 8-aligned, its time only accessed through the stamp.
    let (key, stamp, now) = unsafe { (&*key, Stamp::at(&raw mut (*template).last_used_ns), *now) };
    let timeout = TEMPLATE_RULES.get(key.service).map_or(0, |r| r.timeout);
    let used = stamp.load();
    if expiry::expired(used, now, timeout) && stamp.claim(used) {
        let _ = PERSIST.remove(key);
    }
    0
}
