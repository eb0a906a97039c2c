//! What the program does with a packet, and the global counter each outcome is counted in.

use aya_ebpf::bindings::xdp_action;
use lb_common::{event::EventKind, stats::Global};

/// Why a packet for a virtual service was dropped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No real server of the service can take the flow.
    NoDest,
    /// The flow's real server has no known MAC.
    DestUnresolved,
    /// The connection table has no room for the flow.
    FlowTableFull,
    /// Another CPU created the flow first, and its entry was gone or no longer valid when
    /// this packet looked again.
    FlowVanished,
}

impl DropReason {
    /// The event reported for this drop, if the daemon logs it.
    pub const fn event(self) -> Option<EventKind> {
        match self {
            Self::NoDest => Some(EventKind::NoDest),
            Self::FlowTableFull => Some(EventKind::FlowTableFull),
            Self::DestUnresolved | Self::FlowVanished => None,
        }
    }
}

/// The program's decision on one packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not for a virtual service (or not a packet the balancer handles): to the kernel.
    Pass,
    /// Readdressed to its real server and sent back out.
    Forward,
    /// For a virtual service, but dropped.
    Drop(DropReason),
}

impl Verdict {
    /// The XDP action.
    pub const fn action(self) -> u32 {
        match self {
            Self::Pass => xdp_action::XDP_PASS,
            Self::Forward => xdp_action::XDP_TX,
            Self::Drop(_) => xdp_action::XDP_DROP,
        }
    }

    /// The global counter the verdict is counted in.
    pub const fn counter(self) -> Global {
        match self {
            Self::Pass => Global::Passed,
            Self::Forward => Global::Forwarded,
            Self::Drop(DropReason::NoDest) => Global::NoDest,
            Self::Drop(DropReason::DestUnresolved) => Global::DestUnresolved,
            Self::Drop(DropReason::FlowTableFull) => Global::FlowTableFull,
            Self::Drop(DropReason::FlowVanished) => Global::FlowVanished,
        }
    }
}
