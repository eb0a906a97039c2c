//! What the program does with a packet, and the global counter each outcome is counted in.

use aya_ebpf::bindings::xdp_action;
use lb_common::{event::EventKind, stats::Global};

/// Why a packet for a virtual service was dropped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No real server of the service can take the flow.
    NoDest,
    /// The flow's real server has no known MAC; or the real server a later fragment's
    /// datagram went to has none, or left.
    DestUnresolved,
    /// The connection table has no room for the flow.
    FlowTableFull,
    /// Another CPU created the flow first (or the flow's expired entry was still being
    /// removed), and its entry was gone or no longer valid when this packet looked again.
    FlowVanished,
    /// The flow's real server was removed (IPVS's `expire_nodest_conn=0`).
    DestRemoved,
}

impl DropReason {
    /// The event reported for this drop, if the daemon logs it.
    pub const fn event(self) -> Option<EventKind> {
        match self {
            Self::NoDest => Some(EventKind::NoDest),
            Self::FlowTableFull => Some(EventKind::FlowTableFull),
            Self::DestUnresolved | Self::FlowVanished | Self::DestRemoved => None,
        }
    }
}

/// Why a packet went to the kernel.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// Not for a virtual service, or not a packet the balancer handles.
    Unhandled,
    /// A later fragment of a datagram whose first fragment was not forwarded.
    UntrackedFragment,
}

/// What was forwarded to a real server.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// A packet of a flow (or a datagram's first fragment).
    Flow,
    /// An ICMP error about a flow.
    IcmpError,
    /// A later fragment, after its datagram's first fragment.
    Fragment,
}

/// The program's decision on one packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// To the kernel, unchanged.
    Pass(Passed),
    /// Readdressed to a real server and sent back out.
    Forward(Forwarded),
    /// For a virtual service, but dropped.
    Drop(DropReason),
}

impl Verdict {
    /// Not a packet the balancer handles.
    pub const PASS: Self = Self::Pass(Passed::Unhandled);

    /// The XDP action.
    pub const fn action(self) -> u32 {
        match self {
            Self::Pass(_) => xdp_action::XDP_PASS,
            Self::Forward(_) => xdp_action::XDP_TX,
            Self::Drop(_) => xdp_action::XDP_DROP,
        }
    }

    /// The global counter the verdict is counted in.
    pub const fn counter(self) -> Global {
        match self {
            Self::Pass(Passed::Unhandled) => Global::Passed,
            Self::Pass(Passed::UntrackedFragment) => Global::FragmentUntracked,
            Self::Forward(Forwarded::Flow) => Global::Forwarded,
            Self::Forward(Forwarded::IcmpError) => Global::IcmpForwarded,
            Self::Forward(Forwarded::Fragment) => Global::FragmentForwarded,
            Self::Drop(DropReason::NoDest) => Global::NoDest,
            Self::Drop(DropReason::DestUnresolved) => Global::DestUnresolved,
            Self::Drop(DropReason::FlowTableFull) => Global::FlowTableFull,
            Self::Drop(DropReason::FlowVanished) => Global::FlowVanished,
            Self::Drop(DropReason::DestRemoved) => Global::DestRemoved,
        }
    }
}
