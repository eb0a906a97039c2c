//! The program's maps. The daemon pins them (see lb-userspace's dataplane) so that a restarted
//! daemon finds them again.

use crate::packet::Ip;
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use lb_common::{
    DEFAULT_MAX_FLOWS, DEFAULT_MAX_TEMPLATES, LIST_POOL_SIZE, MAX_DESTS, MAX_SERVICES,
    TABLE_POOL_SIZE,
    config::Director,
    dest::{Dest, DestConns},
    expiry::TemplateRule,
    flow::{Flow, FlowKey, Persist, PersistKey},
    frag::{FragKey, FragOwner, MAX_FRAGMENTED_DATAGRAMS},
    sched::locality::{self, Locality, LocalityKey},
    service::{SchedState, Service, ServiceKey},
    state::Timeouts,
    stats::{Global, Traffic},
};

/// Not preallocated: a replaced or removed service's element is freed only after an RCU grace
/// period (a preallocated map hands it to the writer's next update at once).
#[map(name = "SERVICES")]
pub static SERVICES: HashMap<ServiceKey, Service> =
    HashMap::with_max_entries(MAX_SERVICES, BPF_F_NO_PREALLOC);

#[map(name = "SERVICE_DESTS")]
pub static SERVICE_DESTS: Array<u32> = Array::with_max_entries(LIST_POOL_SIZE, 0);

#[map(name = "SERVICE_SCHED")]
pub static SERVICE_SCHED: Array<SchedState> = Array::with_max_entries(MAX_SERVICES, 0);

#[map(name = "SERVICE_TABLES")]
pub static SERVICE_TABLES: Array<u32> = Array::with_max_entries(TABLE_POOL_SIZE, 0);

#[map(name = "DESTS")]
pub static DESTS: Array<Dest> = Array::with_max_entries(MAX_DESTS, 0);

#[map(name = "DEST_CONNS")]
pub static DEST_CONNS: Array<DestConns> = Array::with_max_entries(MAX_DESTS, 0);

#[map(name = "DEST_RELEASED")]
pub static DEST_RELEASED: Array<DestConns> = Array::with_max_entries(MAX_DESTS, 0);

#[map(name = "FLOWS")]
pub static FLOWS: HashMap<FlowKey, Flow> = HashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

/// Not preallocated: it costs memory only for the templates there are (none without a
/// persistent service), and a removed or replaced template is freed only after an RCU grace
/// period.
#[map(name = "PERSIST")]
pub static PERSIST: HashMap<PersistKey, Persist> =
    HashMap::with_max_entries(DEFAULT_MAX_TEMPLATES, BPF_F_NO_PREALLOC);

/// The idle timeout of each connection state, for the sweeper.
#[map(name = "TIMEOUTS")]
pub static TIMEOUTS: Array<Timeouts> = Array::with_max_entries(1, 0);

/// Each service id's persistence, for the sweeper.
#[map(name = "TEMPLATE_RULES")]
pub static TEMPLATE_RULES: Array<TemplateRule> = Array::with_max_entries(MAX_SERVICES, 0);

/// Not preallocated, like SERVICES: an entry replaced by another CPU is freed only after an
/// RCU grace period, so a copy read through a pointer is the old or the new entry.
#[map(name = "LOCALITY")]
pub static LOCALITY: HashMap<LocalityKey, Locality> =
    HashMap::with_max_entries(locality::CAPACITY, BPF_F_NO_PREALLOC);

/// One scratch entry per CPU: the copy of a LOCALITY entry a pick works on, off the stack.
/// One scratch packet per CPU: the parsed headers, kept off the program's stack, which the
/// deepest scheduler call chain adds to (an IPv6 flow's eight address words would take it
/// past the verifier's 512 bytes).
#[map(name = "PACKET_SCRATCH")]
pub static PACKET_SCRATCH: PerCpuArray<Ip> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "LOCALITY_SCRATCH")]
pub static LOCALITY_SCRATCH: PerCpuArray<Locality> = PerCpuArray::with_max_entries(1, 0);

/// An LRU map: datagrams are never deleted, the oldest make room for new ones.
#[map(name = "FRAGS")]
pub static FRAGS: LruHashMap<FragKey, FragOwner> =
    LruHashMap::with_max_entries(MAX_FRAGMENTED_DATAGRAMS, 0);

#[map(name = "SERVICE_STATS")]
pub static SERVICE_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

#[map(name = "DEST_STATS")]
pub static DEST_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(MAX_DESTS, 0);

#[map(name = "GLOBAL_STATS")]
pub static GLOBAL_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Global::COUNT, 0);

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 16, 0);

#[map(name = "FAMILIES")]
pub static FAMILIES: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[map(name = "DIRECTOR")]
pub static DIRECTOR: Array<Director> = Array::with_max_entries(1, 0);

/// Adds one to a global counter.
#[inline(always)]
pub fn count(counter: Global) {
    if let Some(c) = GLOBAL_STATS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe { *c += 1 };
    }
}

/// Adds a packet (and a new connection when `new`) to per-CPU traffic counters.
#[inline(always)]
pub fn account(stats: &PerCpuArray<Traffic>, index: u32, bytes: u16, new: bool) {
    if let Some(t) = stats.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe {
            (*t).packets += 1;
            (*t).bytes += bytes as u64;
            (*t).conns += new as u64;
        }
    }
}
