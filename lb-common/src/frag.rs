//! The fragment table: where the first fragment of a datagram went, so that its later
//! fragments (which carry no ports) follow it to the same real server.

/// Entries in the fragment table (an LRU map: the oldest datagrams make room).
pub const MAX_FRAGMENTED_DATAGRAMS: u32 = 8192;

/// One datagram, as IPv4 reassembly identifies it (addresses in network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragKey {
    /// Source (client) address.
    pub src_addr: u32,
    /// Destination (virtual) address.
    pub dst_addr: u32,
    /// IP identification, network byte order.
    pub id: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Explicit padding.
    pub _pad: u8,
}

/// The real server a datagram's first fragment was forwarded to. Written whole by the data
/// path for each first fragment; never changed in place.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragOwner {
    /// The real server's dest id.
    pub dest: u32,
    /// The dest slot's generation when the first fragment was forwarded.
    pub dest_generation: u32,
    /// The service's id (for its traffic counters).
    pub service: u32,
}
