//! Director-wide settings the daemon gives the data path.

/// The director's own identity on the interface the program is attached to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Director {
    /// MAC address of the attached interface: the source MAC of forwarded frames.
    pub mac: [u8; 6],
    /// Non-zero: report decisions as [`crate::event::Event`]s (the daemon logs at debug level).
    pub debug: u8,
    /// Explicit padding.
    pub _pad: u8,
}
