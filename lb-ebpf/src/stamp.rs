//! An entry's time of last use (a flow's `last_seen_ns`, a template's `last_used_ns`), and the
//! claim that ends it. Users refresh it by compare-and-swap; a remover first swaps the value it
//! judged idle for [`TOMBSTONE`]. So a remover never removes an entry refreshed after it looked,
//! and once claimed an entry is never refreshed again: it reads as absent to everyone but its
//! claimer, who removes (or replaces) it.

use lb_common::expiry::TOMBSTONE;

use crate::shared::SharedU64;

/// A time-of-last-use field.
#[derive(Clone, Copy)]
pub struct Stamp(SharedU64);

impl Stamp {
    /// The field at `field`.
    ///
    /// # Safety
    /// As [`SharedU64::at`].
    #[inline(always)]
    pub unsafe fn at(field: *mut u64) -> Self {
        // SAFETY: the caller's guarantee.
        Self(unsafe { SharedU64::at(field) })
    }

    /// The time of last use, [`TOMBSTONE`] for a claimed entry.
    #[inline(always)]
    pub fn load(self) -> u64 {
        self.0.load()
    }

    /// Marks the entry used at `now`. False if it has been claimed: it is gone.
    #[inline(always)]
    pub fn refresh(self, now: u64) -> bool {
        let seen = self.0.load();
        if seen == TOMBSTONE {
            return false;
        }
        // Losing to another user's refresh is as good as winning: the entry is in use.
        match self.0.compare_exchange(seen, now) {
            Ok(()) => true,
            Err(current) => current != TOMBSTONE,
        }
    }

    /// Claims the entry for removal if its time of last use is still `seen`.
    #[inline(always)]
    pub fn claim(self, seen: u64) -> bool {
        seen != TOMBSTONE && self.0.compare_exchange(seen, TOMBSTONE).is_ok()
    }
}
