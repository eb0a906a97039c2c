//! Real servers ("destinations" in IPVS) as the data path sees them.

/// The daemon has resolved this real server's MAC on the attached interface.
pub const DEST_F_RESOLVED: u16 = 1;

/// One real server, indexed by its dest id. Written only by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dest {
    /// The real server's address.
    pub addr: crate::addr::Addr,
    /// IPVS weight; 0 means no new connections.
    pub weight: u32,
    /// Changes whenever the slot is given to another real server; flows remember it.
    pub generation: u32,
    /// Upper connection threshold (0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold (0 = derived from the upper one).
    pub l_threshold: u32,
    /// `DEST_F_*` flags.
    pub flags: u16,
    /// The real server's MAC address.
    pub mac: [u8; 6],
}

impl Dest {
    /// Whether the data path can send to this real server at all.
    pub const fn is_resolved(&self) -> bool {
        self.flags & DEST_F_RESOLVED != 0
    }

    /// Whether a flow or persistence template that recorded `generation` when it was given
    /// this slot still belongs to the real server in it (the slot was not reassigned since).
    pub const fn holds(&self, generation: u32) -> bool {
        self.generation == generation
    }
}

/// Connection counts of one real server. Each map has one kind of writer: the data path counts
/// connections in, moves them between the two counters as their state changes, and counts them
/// out when they expire (the sweeper program), from every CPU at once, so it changes each field
/// atomically; the daemon writes a second map with what the slot had counted when it was given
/// to its current holder; the live counts are the difference.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestConns {
    /// Connections in ESTABLISHED (IPVS ActiveConn).
    pub active: u32,
    /// Connections in any other state (IPVS InActConn).
    pub inactive: u32,
    /// Non-zero while the server is over its connection thresholds (data path only, any CPU).
    pub overloaded: u32,
}

impl DestConns {
    /// Counts in `self` minus those in `released`, in wrapping arithmetic as the counters are.
    pub const fn minus(&self, released: &DestConns) -> DestConns {
        DestConns {
            active: self.active.wrapping_sub(released.active),
            inactive: self.inactive.wrapping_sub(released.inactive),
            overloaded: self.overloaded,
        }
    }
}
