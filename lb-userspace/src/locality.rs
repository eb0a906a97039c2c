//! Expiry of the lblc/lblcr cache (the program's LOCALITY map), at a time given by the caller:
//! an entry goes when unused for a day, or for 6 minutes while the cache is crowded, as IPVS's
//! periodic check, and with its service's use of lblc/lblcr, as IPVS drops the table with the
//! scheduler. The cache is small and empty without such services, so the daemon reads it
//! whole each tick; flows and templates expire in the kernel.

use std::collections::HashSet;

use anyhow::Result;
use lb_common::sched::locality;

use crate::maps::Maps;

/// Removes the entries unused for [`locality::EXPIRATION_NS`] at monotonic time `now` (or,
/// while the cache holds more than [`locality::CROWDED`], for [`locality::CROWDED_IDLE_NS`]),
/// and those of services not in `caching`; how many.
pub fn expire(maps: &mut impl Maps, caching: &HashSet<u32>, now: u64) -> Result<usize> {
    let entries = maps.localities()?;
    let idle = if entries.len() > locality::CROWDED {
        locality::CROWDED_IDLE_NS
    } else {
        locality::EXPIRATION_NS
    };
    let mut removed = 0;
    for (key, _) in entries.iter().filter(|(k, e)| {
        !caching.contains(&k.service) || now.saturating_sub(e.last_used_ns) >= idle
    }) {
        maps.remove_locality(key)?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use lb_common::{
        expiry::NS,
        sched::locality::{self, Locality, LocalityKey},
    };

    use super::*;
    use crate::maps::fake::FakeMaps;

    fn entry(addr: u32, last_used_ns: u64) -> (LocalityKey, Locality) {
        (
            LocalityKey {
                service: 0,
                addr: lb_common::addr::Addr::v4(addr),
            },
            Locality {
                last_used_ns,
                ..Locality::default()
            },
        )
    }

    #[test]
    fn entries_go_after_a_day_6_min_when_crowded_or_with_their_scheduler() {
        let mut m = FakeMaps::default();
        m.localities.extend([entry(1, 0), entry(2, 20 * NS)]);
        let caching = HashSet::from([0]);
        let day = locality::EXPIRATION_NS;
        assert_eq!(expire(&mut m, &caching, day - 1).unwrap(), 0);
        assert_eq!(expire(&mut m, &caching, day).unwrap(), 1);
        assert_eq!(m.localities.len(), 1);
        // Crowded: every entry unused for 6 minutes goes.
        let now = 20 * NS + locality::CROWDED_IDLE_NS;
        m.localities
            .extend((0..locality::CROWDED as u32).map(|a| entry(100 + a, 20 * NS)));
        assert_eq!(expire(&mut m, &caching, now - 1).unwrap(), 0);
        assert_eq!(
            expire(&mut m, &caching, now).unwrap(),
            locality::CROWDED + 1
        );
        assert!(m.localities.is_empty());
        // A service that no longer uses lblc/lblcr loses its entries at once.
        m.localities.insert(entry(1, now).0, entry(1, now).1);
        assert_eq!(expire(&mut m, &HashSet::from([1]), now).unwrap(), 1);
        assert_eq!(expire(&mut m, &HashSet::new(), now).unwrap(), 0);
    }
}
