//! Decisions the program reports through a ring buffer while the daemon logs at debug level
//! (the director's `debug` switch); with the switch off nothing is written.

/// What happened.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A new flow was given a real server.
    Scheduled = 1,
    /// A packet was dropped: no usable real server.
    NoDest = 2,
    /// A packet was dropped: the connection table is full.
    FlowTableFull = 3,
}

impl EventKind {
    /// The kind with this number.
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Scheduled),
            2 => Some(Self::NoDest),
            3 => Some(Self::FlowTableFull),
            _ => None,
        }
    }
}

/// One report (addresses and ports in network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// [`EventKind`] as u32.
    pub kind: u32,
    /// The service's id.
    pub service: u32,
    /// The real server's dest id (`u32::MAX` when none).
    pub dest: u32,
    /// Client address.
    pub src_addr: crate::addr::Addr,
    /// Client port.
    pub src_port: u16,
    /// IP protocol number.
    pub proto: u16,
}
