//! The connection table: every flow stays on the real server it was first given.

use crate::{addr::Addr, state::ConnState};

/// A flow as the client sends it (addresses and ports in network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Client address.
    pub src_addr: Addr,
    /// Virtual address.
    pub dst_addr: Addr,
    /// Client port.
    pub src_port: u16,
    /// Virtual port.
    pub dst_port: u16,
    /// IP protocol number, widened so that the key has no padding to zero.
    pub proto: u32,
}

/// What the table keeps per flow. The data path inserts it whole; afterwards only `state` and
/// `last_seen_ns` change, in place and atomically: the data path refreshes `last_seen_ns` by
/// compare-and-swap and only then moves `state`, and the sweeper removes a flow only after
/// swapping its `last_seen_ns` for [`crate::expiry::TOMBSTONE`], so that a flow that received a
/// packet is never removed and a removed flow's state is the one it is counted out with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Monotonic time (ns, `CLOCK_MONOTONIC`) of the last packet, or
    /// [`crate::expiry::TOMBSTONE`] once claimed for removal.
    pub last_seen_ns: u64,
    /// The real server's dest id.
    pub dest: u32,
    /// The dest slot's generation when the flow was scheduled.
    pub dest_generation: u32,
    /// The service's id.
    pub service: u32,
    /// [`ConnState`] as u32 (no padding to zero).
    pub state: u32,
}

impl Flow {
    /// The flow's connection state.
    pub fn state(&self) -> ConnState {
        Self::decode_state(self.state)
    }

    /// A stored `state` value as a [`ConnState`]; an unknown value reads as
    /// [`ConnState::None`].
    pub const fn decode_state(raw: u32) -> ConnState {
        match ConnState::from_u8(raw as u8) {
            Some(state) => state,
            None => ConnState::None,
        }
    }

    /// The state a new flow starts in, before its first packet is applied.
    pub const fn initial_state(proto: u32) -> ConnState {
        if proto == crate::ip_proto::UDP as u32 {
            ConnState::Udp
        } else {
            ConnState::None
        }
    }
}

/// Key of a persistence template: one client (masked by the service's netmask) of one service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersistKey {
    /// The service's id.
    pub service: u32,
    /// Client address & the service's persistence mask.
    pub client: Addr,
}

/// A persistence template: new flows of the client go to `dest` while it is usable. The data
/// path inserts it whole; the data path (giving it a new flow) and the sweeper (finding a live
/// flow it controls) refresh `last_used_ns` in place by compare-and-swap; the data path sets
/// `assured` in place; the sweeper removes it when it expires, claiming it as it claims a flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    /// Monotonic time (ns) the template was last given a new flow or seen controlling a live
    /// one, or [`crate::expiry::TOMBSTONE`] once claimed for removal.
    pub last_used_ns: u64,
    /// The real server's dest id.
    pub dest: u32,
    /// The dest slot's generation when the template was made.
    pub dest_generation: u32,
    /// 1 once one of the client's TCP flows reached ESTABLISHED (IPVS's
    /// `ip_vs_control_assure_ct`; a UDP template needs a reply, which direct routing never
    /// sees), else 0.
    pub assured: u32,
    /// Zero: the value has no padding.
    pub _pad: u32,
}

impl Persist {
    /// The state name ipvsadm lists for the template (`-Lnc`).
    pub const fn state_name(&self) -> &'static str {
        if self.assured != 0 { "ASSURED" } else { "NONE" }
    }
}
