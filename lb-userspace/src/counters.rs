//! Traffic counters as the operator sees them: the program's cumulative per-CPU sums minus a
//! baseline the daemon keeps (taken by `-Z` and when a slot gets a new holder), so the daemon
//! never writes a map the program counts in; rates smoothed as IPVS's estimator does; and
//! what the totals keep of services that no longer show it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use lb_common::{MAX_DESTS, MAX_SERVICES};

use crate::listing::{Rates, TrafficStatus};

/// Whose counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Owner {
    /// A service id.
    Service(u32),
    /// A real server slot.
    Dest(u32),
}

/// Ticks between two estimator samples (IPVS samples every 2 s).
pub const SAMPLE_TICKS: u32 = 2;

/// IPVS's estimator: every 2 s the rate since the last sample moves each average a quarter of
/// the way, in fixed point (conns and packets per second << 10, bytes per second << 5).
#[derive(Clone, Copy, Debug, Default)]
struct Estimator {
    last: Option<TrafficStatus>,
    cps: i64,
    pps: i64,
    bps: i64,
}

impl Estimator {
    fn sample(&mut self, now: TrafficStatus) {
        if let Some(last) = self.last {
            let delta = now.minus(&last);
            let ewma = |avg: &mut i64, rate: u64| *avg += (rate as i64 - *avg) >> 2;
            ewma(&mut self.cps, delta.conns << 9);
            ewma(&mut self.pps, delta.packets << 9);
            ewma(&mut self.bps, delta.bytes << 4);
        }
        self.last = Some(now);
    }

    fn rates(&self) -> Rates {
        Rates {
            cps: ((self.cps + 0x1FF) >> 10) as u64,
            pps: ((self.pps + 0x1FF) >> 10) as u64,
            bps: ((self.bps + 0xF) >> 5) as u64,
        }
    }
}

impl TrafficStatus {
    /// `self - base`, per counter, never below zero.
    pub fn minus(&self, base: &TrafficStatus) -> TrafficStatus {
        TrafficStatus {
            conns: self.conns.saturating_sub(base.conns),
            packets: self.packets.saturating_sub(base.packets),
            bytes: self.bytes.saturating_sub(base.bytes),
        }
    }

    /// `self + other`, per counter.
    pub fn plus(&self, other: &TrafficStatus) -> TrafficStatus {
        TrafficStatus {
            conns: self.conns + other.conns,
            packets: self.packets + other.packets,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// Values by owner, in vectors indexed by service id and by slot: both are small dense
/// numbers, and a listing of 100,000 real servers reads their slots in order, which a hash
/// table would turn into as many cache misses.
#[derive(Debug)]
struct ByOwner<V> {
    services: Vec<Option<V>>,
    dests: Vec<Option<V>>,
}

impl<V> Default for ByOwner<V> {
    fn default() -> Self {
        Self {
            services: Vec::new(),
            dests: Vec::new(),
        }
    }
}

impl<V> ByOwner<V> {
    fn get(&self, owner: Owner) -> Option<&V> {
        let (values, i) = match owner {
            Owner::Service(id) => (&self.services, id),
            Owner::Dest(id) => (&self.dests, id),
        };
        values.get(i as usize)?.as_ref()
    }

    /// `owner`'s entry, made room for; `None` for an id no service or slot can have (a
    /// saved state from elsewhere), whose value is never asked for.
    fn entry(&mut self, owner: Owner) -> Option<&mut Option<V>> {
        let (values, i, max) = match owner {
            Owner::Service(id) => (&mut self.services, id, MAX_SERVICES),
            Owner::Dest(id) => (&mut self.dests, id, MAX_DESTS),
        };
        if i >= max {
            return None;
        }
        let i = i as usize;
        if values.len() <= i {
            values.resize_with(i + 1, || None);
        }
        values.get_mut(i)
    }

    fn insert(&mut self, owner: Owner, value: V) {
        if let Some(e) = self.entry(owner) {
            *e = Some(value);
        }
    }

    fn remove(&mut self, owner: Owner) {
        if let Some(e) = self.entry(owner) {
            *e = None;
        }
    }

    fn iter(&self) -> impl Iterator<Item = (Owner, &V)> {
        fn each<V>(
            values: &[Option<V>],
            owner: fn(u32) -> Owner,
        ) -> impl Iterator<Item = (Owner, &V)> {
            (0..)
                .zip(values)
                .filter_map(move |(i, v)| Some((owner(i), v.as_ref()?)))
        }
        each(&self.services, Owner::Service).chain(each(&self.dests, Owner::Dest))
    }
}

impl<V> FromIterator<(Owner, V)> for ByOwner<V> {
    fn from_iter<I: IntoIterator<Item = (Owner, V)>>(iter: I) -> Self {
        let mut map = Self::default();
        for (owner, value) in iter {
            map.insert(owner, value);
        }
        map
    }
}

/// Baselines and estimators of every service and real server, and of the global counters.
#[derive(Debug, Default)]
pub struct Counters {
    bases: ByOwner<TrafficStatus>,
    estimators: ByOwner<Estimator>,
    global_bases: HashMap<String, u64>,
    retired: TrafficStatus,
}

/// The part of [`Counters`] a restarted daemon keeps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// Per owner.
    pub owners: Vec<(Owner, TrafficStatus)>,
    /// Global counters by name.
    pub globals: Vec<(String, u64)>,
    /// What the totals keep of services that no longer show it.
    #[serde(default)]
    pub retired: TrafficStatus,
}

impl Counters {
    /// Counters restored from a predecessor's baselines.
    pub fn restore(b: Baselines) -> Self {
        Self {
            bases: b.owners.into_iter().collect(),
            estimators: ByOwner::default(),
            global_bases: b.globals.into_iter().collect(),
            retired: b.retired,
        }
    }

    /// What a successor needs.
    pub fn baselines(&self) -> Baselines {
        Baselines {
            owners: self.bases.iter().map(|(o, t)| (o, *t)).collect(),
            globals: self
                .global_bases
                .iter()
                .map(|(n, v)| (n.clone(), *v))
                .collect(),
            retired: self.retired,
        }
    }

    /// Starts `owner` from zero at the program's current sums `raw` (a new holder of the slot,
    /// or `-Z`).
    pub fn zero(&mut self, owner: Owner, raw: TrafficStatus) {
        self.bases.insert(owner, raw);
        self.estimators.remove(owner);
    }

    /// Starts the global counter `name` from zero at `raw`.
    pub fn zero_global(&mut self, name: &str, raw: u64) {
        self.global_bases.insert(name.to_owned(), raw);
    }

    /// Forgets `owner` (its slot is free).
    pub fn forget(&mut self, owner: Owner) {
        self.bases.remove(owner);
        self.estimators.remove(owner);
    }

    /// Feeds `owner`'s estimator with the sums `raw` (every [`SAMPLE_TICKS`]).
    pub fn sample(&mut self, owner: Owner, raw: TrafficStatus) {
        let shown = self.traffic(owner, raw);
        if let Some(e) = self.estimators.entry(owner) {
            e.get_or_insert_default().sample(shown);
        }
    }

    /// `owner`'s counters since its baseline.
    pub fn traffic(&self, owner: Owner, raw: TrafficStatus) -> TrafficStatus {
        self.bases.get(owner).map_or(raw, |b| raw.minus(b))
    }

    /// `owner`'s smoothed rates.
    pub fn rates(&self, owner: Owner) -> Rates {
        self.estimators
            .get(owner)
            .map(Estimator::rates)
            .unwrap_or_default()
    }

    /// Keeps in the totals the traffic a service shows before it is removed or zeroed alone:
    /// IPVS's totals keep counting it until everything is zeroed.
    pub fn retire(&mut self, shown: TrafficStatus) {
        self.retired = self.retired.plus(&shown);
    }

    /// `-Z` of everything: the totals start from zero too.
    pub fn zero_retired(&mut self) {
        self.retired = TrafficStatus::default();
    }

    /// The totals, given the traffic the services show now, summed.
    pub fn total(&self, shown: TrafficStatus) -> TrafficStatus {
        self.retired.plus(&shown)
    }

    /// The global counter `name` since its baseline.
    pub fn global(&self, name: &str, raw: u64) -> u64 {
        raw.saturating_sub(self.global_bases.get(name).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(conns: u64, packets: u64, bytes: u64) -> TrafficStatus {
        TrafficStatus {
            conns,
            packets,
            bytes,
        }
    }

    #[test]
    fn zero_sets_a_baseline_without_touching_the_sums() {
        let mut c = Counters::default();
        let o = Owner::Dest(3);
        assert_eq!(c.traffic(o, t(5, 50, 500)), t(5, 50, 500));
        c.zero(o, t(5, 50, 500));
        assert_eq!(c.traffic(o, t(7, 60, 800)), t(2, 10, 300));
        let c = Counters::restore(c.baselines());
        assert_eq!(c.traffic(o, t(7, 60, 800)), t(2, 10, 300));
        assert_eq!(c.traffic(Owner::Service(3), t(1, 1, 1)), t(1, 1, 1));
    }

    #[test]
    fn services_and_slots_of_one_number_are_apart_and_impossible_ids_are_ignored() {
        let mut c = Counters::default();
        c.zero(Owner::Service(7), t(1, 1, 1));
        c.zero(Owner::Dest(7), t(2, 2, 2));
        c.zero(Owner::Dest(u32::MAX), t(3, 3, 3));
        c.forget(Owner::Dest(MAX_DESTS));
        assert_eq!(c.traffic(Owner::Service(7), t(5, 5, 5)), t(4, 4, 4));
        assert_eq!(c.traffic(Owner::Dest(7), t(5, 5, 5)), t(3, 3, 3));
        assert_eq!(c.traffic(Owner::Dest(u32::MAX), t(5, 5, 5)), t(5, 5, 5));
        assert_eq!(
            c.baselines().owners,
            vec![
                (Owner::Service(7), t(1, 1, 1)),
                (Owner::Dest(7), t(2, 2, 2))
            ]
        );
        c.forget(Owner::Dest(7));
        assert_eq!(c.baselines().owners, vec![(Owner::Service(7), t(1, 1, 1))]);
    }

    #[test]
    fn totals_keep_retired_traffic_until_zeroed() {
        let mut c = Counters::default();
        c.retire(t(2, 20, 200));
        c.retire(t(1, 10, 100));
        let c2 = Counters::restore(c.baselines());
        assert_eq!(c2.total(t(1, 1, 1)), t(4, 31, 301));
        c.zero_retired();
        assert_eq!(c.total(t(1, 1, 1)), t(1, 1, 1));
    }

    #[test]
    fn rates_converge_as_ipvs_estimator() {
        let mut c = Counters::default();
        let o = Owner::Service(0);
        // A steady 100 conn/s, 1000 pkt/s, 64000 B/s, sampled every 2 s.
        for i in 0..100u64 {
            c.sample(o, t(200 * i, 2000 * i, 128_000 * i));
        }
        assert_eq!(
            c.rates(o),
            Rates {
                cps: 100,
                pps: 1000,
                bps: 64000
            }
        );
        // One sample after traffic stops: a quarter of the way down.
        c.sample(o, t(200 * 99, 2000 * 99, 128_000 * 99));
        assert_eq!(c.rates(o).cps, 75);
        c.zero(o, t(0, 0, 0));
        assert_eq!(c.rates(o), Rates::default());
    }
}
