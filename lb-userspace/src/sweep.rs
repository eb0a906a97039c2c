//! Expiry of idle flows and persistence templates, at a time given by the caller: a flow idle
//! longer than its state's timeout is removed and counted out of its real server; a template
//! that controls no live flow and has not for its service's persistence timeout is removed, as
//! IPVS expires a template after its last connection; an lblc/lblcr cache entry goes when
//! unused for a day, or for 6 minutes while the cache is crowded, as IPVS's periodic check,
//! and with its service's use of lblc/lblcr, as IPVS drops the table with the scheduler.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use lb_common::{
    dest::DestConns,
    flow::{Flow, FlowKey, Persist, PersistKey},
    sched::locality,
    state::Timeouts,
};

use crate::{maps::Maps, model::Persistence};

/// Nanoseconds in a second.
pub const NS: u64 = 1_000_000_000;

/// What the sweeper remembers between sweeps.
#[derive(Debug, Default)]
pub struct Sweeper {
    /// When each template was last seen controlling a live flow (monotonic ns).
    template_in_use: HashMap<PersistKey, u64>,
}

/// What one sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Flows removed.
    pub flows: usize,
    /// Templates removed.
    pub templates: usize,
    /// lblc/lblcr cache entries removed.
    pub localities: usize,
}

impl Sweeper {
    /// When template `key` was last used: given a new flow or controlling a live one.
    pub fn last_used(&self, key: &PersistKey, t: &Persist) -> u64 {
        t.last_used_ns
            .max(self.template_in_use.get(key).copied().unwrap_or(0))
    }

    /// Removes what is idle at monotonic time `now`; `persistence` gives the persistent
    /// services by id, `caching` the ids of those that schedule with lblc or lblcr.
    pub fn sweep(
        &mut self,
        maps: &mut impl Maps,
        timeouts: &Timeouts,
        persistence: &HashMap<u32, Persistence>,
        caching: &HashSet<u32>,
        now: u64,
    ) -> Result<Swept> {
        let (expired, live): (Vec<_>, Vec<_>) = maps.flows()?.into_iter().partition(|(_, f)| {
            now.saturating_sub(f.last_seen_ns) > u64::from(timeouts.of(f.state())) * NS
        });
        let mut released: HashMap<u32, DestConns> = HashMap::new();
        let mut swept = Swept::default();
        for (key, flow) in &expired {
            if !maps.remove_flow(key)? {
                continue;
            }
            swept.flows += 1;
            // A flow of an earlier holder of the slot was never counted for the current one.
            if !maps.dest(flow.dest)?.holds(flow.dest_generation) {
                continue;
            }
            let r = match released.entry(flow.dest) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(maps.released(flow.dest)?),
            };
            let c = r.counter_mut(flow.state().is_active());
            *c = c.wrapping_add(1);
        }
        for (id, r) in &released {
            maps.write_released(*id, r)?;
        }
        swept.templates = self.expire_templates(maps, &live, persistence, now)?;
        swept.localities = expire_localities(maps, caching, now)?;
        Ok(swept)
    }

    fn expire_templates(
        &mut self,
        maps: &mut impl Maps,
        live: &[(FlowKey, Flow)],
        persistence: &HashMap<u32, Persistence>,
        now: u64,
    ) -> Result<usize> {
        for (key, flow) in live {
            if let Some(p) = persistence.get(&flow.service) {
                let client = key.src_addr & u32::from_ne_bytes(p.netmask.octets());
                self.template_in_use.insert(
                    PersistKey {
                        service: flow.service,
                        client,
                    },
                    now,
                );
            }
        }
        let mut removed = 0;
        for (key, t) in maps.templates()? {
            let timeout = persistence
                .get(&key.service)
                .map_or(0, |p| u64::from(p.timeout) * NS);
            if now.saturating_sub(self.last_used(&key, &t)) > timeout {
                maps.remove_template(&key)?;
                self.template_in_use.remove(&key);
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Removes the lblc/lblcr cache entries unused for [`locality::EXPIRATION_NS`] (or, while the
/// cache holds more than [`locality::CROWDED`], for [`locality::CROWDED_IDLE_NS`]), and those
/// of services not in `caching`.
fn expire_localities(maps: &mut impl Maps, caching: &HashSet<u32>, now: u64) -> Result<usize> {
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
    use std::net::Ipv4Addr;

    use lb_common::{
        dest::{Dest, DestConns},
        state::ConnState,
    };

    use super::*;
    use crate::maps::{fake::FakeMaps, live_conns};

    fn flow(src: u32, dest: u32, state: ConnState, at: u64) -> (FlowKey, Flow) {
        (
            FlowKey {
                src_addr: src,
                dst_addr: 1,
                src_port: 1000,
                dst_port: 80,
                proto: 6,
            },
            Flow {
                last_seen_ns: at,
                dest,
                dest_generation: 1,
                service: 0,
                state: state as u32,
            },
        )
    }

    /// A data plane with slot 3 (generation 1) and the flows counted in as the program would.
    fn maps(flows: &[(FlowKey, Flow)]) -> FakeMaps {
        let mut m = FakeMaps::default();
        m.dests.insert(
            3,
            Dest {
                generation: 1,
                ..Dest::default()
            },
        );
        for (k, f) in flows {
            m.flows.insert(*k, *f);
            let c = m.counted_in.entry(f.dest).or_default();
            *c.counter_mut(f.state().is_active()) += 1;
        }
        m
    }

    #[test]
    fn expires_each_state_after_its_timeout_and_counts_it_out_once() {
        let t = Timeouts::default();
        let flows = [
            flow(1, 3, ConnState::Established, 0),
            flow(2, 3, ConnState::SynRecv, 0),
            flow(3, 3, ConnState::FinWait, 0),
        ];
        let mut m = maps(&flows);
        let mut s = Sweeper::default();
        let (none, caching) = (HashMap::new(), HashSet::new());
        // SYN_RECV's 60 s are over only after 60 s.
        assert_eq!(
            s.sweep(&mut m, &t, &none, &caching, 60 * NS).unwrap().flows,
            0
        );
        assert_eq!(
            s.sweep(&mut m, &t, &none, &caching, 60 * NS + 1)
                .unwrap()
                .flows,
            1
        );
        let c = live_conns(&m, 3).unwrap();
        assert_eq!((c.active, c.inactive), (1, 1));
        assert_eq!(
            s.sweep(&mut m, &t, &none, &caching, 121 * NS)
                .unwrap()
                .flows,
            1
        );
        assert_eq!(
            s.sweep(&mut m, &t, &none, &caching, 121 * NS)
                .unwrap()
                .flows,
            0
        );
        assert_eq!(
            s.sweep(&mut m, &t, &none, &caching, 901 * NS)
                .unwrap()
                .flows,
            1
        );
        assert_eq!(live_conns(&m, 3).unwrap(), DestConns::default());
        assert!(m.flows.is_empty());
    }

    #[test]
    fn flows_of_an_earlier_slot_holder_are_removed_but_not_counted_out() {
        let mut stale = flow(1, 3, ConnState::Established, 0);
        stale.1.dest_generation = 0;
        let mut m = maps(&[stale]);
        m.counted_in.clear();
        let swept = Sweeper::default()
            .sweep(
                &mut m,
                &Timeouts::default(),
                &HashMap::new(),
                &HashSet::new(),
                1000 * NS,
            )
            .unwrap();
        assert_eq!(swept.flows, 1);
        assert_eq!(m.released.get(&3), None);
    }

    #[test]
    fn a_template_lives_while_it_has_flows_and_its_timeout_after() {
        let persistent = HashMap::from([(
            0,
            Persistence {
                timeout: 300,
                netmask: Ipv4Addr::new(255, 255, 255, 0),
            },
        )]);
        let f = flow(0x0a00_0001u32.to_be(), 3, ConnState::Established, 0);
        let key = PersistKey {
            service: 0,
            client: 0x0a00_0000u32.to_be(),
        };
        let mut m = maps(&[f]);
        m.templates.insert(
            key,
            Persist {
                last_used_ns: 0,
                dest: 3,
                dest_generation: 1,
                ..Persist::default()
            },
        );
        let mut s = Sweeper::default();
        let t = Timeouts::default();
        // The flow lives 900 s and holds the template; it then lasts 300 s more.
        for at in [100, 500, 900] {
            s.sweep(&mut m, &t, &persistent, &HashSet::new(), at * NS)
                .unwrap();
            assert!(m.templates.contains_key(&key), "at {at} s");
        }
        assert_eq!(
            s.sweep(&mut m, &t, &persistent, &HashSet::new(), 901 * NS)
                .unwrap()
                .flows,
            1
        );
        assert_eq!(s.last_used(&key, &m.templates[&key]), 900 * NS);
        assert_eq!(
            s.sweep(&mut m, &t, &persistent, &HashSet::new(), 1200 * NS)
                .unwrap()
                .templates,
            0
        );
        assert_eq!(
            s.sweep(&mut m, &t, &persistent, &HashSet::new(), 1200 * NS + 1)
                .unwrap()
                .templates,
            1
        );
    }

    #[test]
    fn locality_entries_go_after_a_day_6_min_when_crowded_or_with_their_scheduler() {
        use lb_common::sched::locality::{self, Locality, LocalityKey};
        let entry = |addr, last_used_ns| {
            (
                LocalityKey { service: 0, addr },
                Locality {
                    last_used_ns,
                    ..Locality::default()
                },
            )
        };
        let mut m = maps(&[]);
        m.localities.extend([entry(1, 0), entry(2, 20 * NS)]);
        let (mut s, t, none) = (Sweeper::default(), Timeouts::default(), HashMap::new());
        let caching = HashSet::from([0]);
        let day = locality::EXPIRATION_NS;
        assert_eq!(
            s.sweep(&mut m, &t, &none, &caching, day - 1)
                .unwrap()
                .localities,
            0
        );
        assert_eq!(
            s.sweep(&mut m, &t, &none, &caching, day)
                .unwrap()
                .localities,
            1
        );
        assert_eq!(m.localities.len(), 1);
        // Crowded: every entry unused for 6 minutes goes.
        let six_min = locality::CROWDED_IDLE_NS;
        let now = 20 * NS + six_min;
        m.localities
            .extend((0..locality::CROWDED as u32).map(|a| entry(100 + a, 20 * NS)));
        assert_eq!(
            s.sweep(&mut m, &t, &none, &caching, now - 1)
                .unwrap()
                .localities,
            0
        );
        let swept = s
            .sweep(&mut m, &t, &none, &caching, now)
            .unwrap()
            .localities;
        assert_eq!(swept, locality::CROWDED + 1);
        assert!(m.localities.is_empty());
        // A service that no longer uses lblc/lblcr loses its entries at once.
        m.localities.insert(entry(1, now).0, entry(1, now).1);
        let (other, none_caching) = (HashSet::from([1]), HashSet::new());
        assert_eq!(
            s.sweep(&mut m, &t, &none, &other, now).unwrap().localities,
            1
        );
        assert_eq!(
            s.sweep(&mut m, &t, &none, &none_caching, now)
                .unwrap()
                .localities,
            0
        );
    }
}
