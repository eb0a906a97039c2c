//! The fragment table: where the first fragment of a datagram went, so that its later
//! fragments (which carry no ports) follow it to the same real server.

/// Entries in the fragment table (an LRU map: the oldest datagrams make room).
pub const MAX_FRAGMENTED_DATAGRAMS: u32 = 8192;

use crate::addr::Addr;

/// One datagram, as reassembly identifies it (addresses in network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragKey {
    /// Source (client) address.
    pub src_addr: Addr,
    /// Destination (virtual) address.
    pub dst_addr: Addr,
    /// Identification, network byte order: IPv4's 16 bits widened, or the IPv6 fragment
    /// header's 32.
    pub id: u32,
    /// IP protocol number (IPv6: the fragment header's next header).
    pub proto: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
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
