//! When a flow or a persistence template has expired: the rule the kernel's sweeper (lb-ebpf's
//! `xdpvs_expire`) applies, kept here so that the host tests exactly what the kernel runs.

use crate::{addr::Addr, flow::PersistKey};

/// Nanoseconds in a second.
pub const NS: u64 = 1_000_000_000;

/// The `last_seen_ns` (or `last_used_ns`) of an entry claimed for removal. Whoever swaps it in
/// (the sweeper, or the data path replacing a stale entry) is the one who removes the entry;
/// everyone else treats the entry as absent and never changes it again.
pub const TOMBSTONE: u64 = u64::MAX;

/// Whether an entry last used at `last_seen` (monotonic ns) has been idle longer than
/// `timeout` seconds at `now`. A [`TOMBSTONE`] never has: its claimer removes it.
pub const fn expired(last_seen: u64, now: u64, timeout: u32) -> bool {
    now.saturating_sub(last_seen) > timeout as u64 * NS
}

/// A service's persistence as the sweeper needs it, by service id (all zero: not persistent).
/// Written only by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TemplateRule {
    /// Persistence timeout in seconds (0: not persistent).
    pub timeout: u32,
    /// Persistence mask of the client address.
    pub mask: Addr,
}

impl TemplateRule {
    /// The template that controls a flow of service `service` from client `src_addr`, if the
    /// service is persistent.
    pub const fn template(&self, service: u32, src_addr: &Addr) -> Option<PersistKey> {
        if self.timeout == 0 {
            return None;
        }
        Some(PersistKey {
            service,
            client: src_addr.masked(&self.mask),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ConnState, Timeouts};

    #[test]
    fn idle_exactly_the_timeout_is_not_expired_a_nanosecond_more_is() {
        let t = Timeouts::default();
        let timeout = t.of(ConnState::SynRecv);
        assert_eq!(timeout, 60);
        assert!(!expired(5 * NS, 65 * NS, timeout));
        assert!(expired(5 * NS, 65 * NS + 1, timeout));
        assert!(expired(0, u64::MAX - 1, t.of(ConnState::Established)));
    }

    #[test]
    fn a_clock_behind_the_entry_is_not_expiry() {
        // A packet stamped after the sweeper read its clock.
        assert!(!expired(10 * NS, 9 * NS, 0));
    }

    #[test]
    fn a_tombstone_never_expires() {
        for now in [0, NS, u64::MAX] {
            assert!(!expired(TOMBSTONE, now, 0));
        }
    }

    #[test]
    fn template_of_a_flow_masks_the_client() {
        let rule = TemplateRule {
            timeout: 300,
            mask: Addr::v4_netmask(u32::from_ne_bytes([255, 255, 255, 0])),
        };
        let client = Addr::v4(u32::from_ne_bytes([10, 0, 0, 7]));
        assert_eq!(
            rule.template(4, &client),
            Some(PersistKey {
                service: 4,
                client: Addr::v4(u32::from_ne_bytes([10, 0, 0, 0])),
            })
        );
        assert_eq!(TemplateRule::default().template(4, &client), None);
    }
}
