//! Traffic counters kept per CPU by the data path.

/// Traffic seen by a service or a real server.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded (IP packet length, as IPVS counts them).
    pub bytes: u64,
}

impl Traffic {
    /// Adds another CPU's counts.
    pub fn add(&mut self, other: &Traffic) {
        self.conns += other.conns;
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

/// Indices of the global counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// Packets handed to the kernel stack (not for a service, or not handled).
    Passed = 0,
    /// Packets forwarded to a real server.
    Forwarded = 1,
    /// Packets for a service dropped because no real server was usable.
    NoDest = 2,
    /// Packets dropped because the connection table was full.
    FlowTableFull = 3,
    /// Packets of a flow dropped because its real server's MAC is not (or no longer) known.
    DestUnresolved = 4,
    /// First packets dropped because the flow another CPU had just created for them was gone
    /// or no longer valid when they looked it up again.
    FlowVanished = 5,
    /// ICMP errors about a flow forwarded to the flow's real server.
    IcmpForwarded = 6,
    /// Later fragments forwarded to the real server their first fragment went to.
    FragmentForwarded = 7,
    /// Later fragments handed to the kernel: no first fragment was forwarded for their
    /// datagram (not one for a service, or not seen yet).
    FragmentUntracked = 8,
    /// Packets of a flow dropped because its real server was removed; the flow expires as
    /// its state's timeout runs out (IPVS's `expire_nodest_conn=0`).
    DestRemoved = 9,
}

impl Global {
    /// Number of global counters.
    pub const COUNT: u32 = Self::ALL.len() as u32;
    /// All counters in index order.
    pub const ALL: [Global; 10] = [
        Self::Passed,
        Self::Forwarded,
        Self::NoDest,
        Self::FlowTableFull,
        Self::DestUnresolved,
        Self::FlowVanished,
        Self::IcmpForwarded,
        Self::FragmentForwarded,
        Self::FragmentUntracked,
        Self::DestRemoved,
    ];

    /// Stable name, used in listings and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Forwarded => "forwarded",
            Self::NoDest => "no_dest",
            Self::FlowTableFull => "flow_table_full",
            Self::DestUnresolved => "dest_unresolved",
            Self::FlowVanished => "flow_vanished",
            Self::IcmpForwarded => "icmp_forwarded",
            Self::FragmentForwarded => "fragment_forwarded",
            Self::FragmentUntracked => "fragment_untracked",
            Self::DestRemoved => "dest_removed",
        }
    }
}
