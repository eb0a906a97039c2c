//! What the daemon's logic reads and writes in the data plane, as one trait: the loaded
//! program's maps implement it ([`crate::dataplane::DataPlane`]), and so does an in-memory
//! fake for the unit tests of the reconciler and the engine.

use anyhow::Result;
use lb_common::{
    dest::{Dest, DestConns},
    event::Event,
    expiry::TemplateRule,
    flow::{Flow, FlowKey, Persist, PersistKey},
    sched::locality::{Locality, LocalityKey},
    service::{SchedState, Service, ServiceKey},
    state::Timeouts,
    stats::{Global, Traffic},
};

/// The program's maps, as the control plane uses them. The daemon is their only writer, except
/// for what the program itself counts and tracks (connection counts, flows, templates,
/// traffic, scheduler state).
pub trait Maps {
    /// Sets the source MAC of forwarded frames and whether the program reports its decisions.
    fn set_director(&mut self, mac: [u8; 6], debug: bool) -> Result<()>;

    /// The real server in slot `id`.
    fn dest(&self, id: u32) -> Result<Dest>;
    /// Writes the real server in slot `id`.
    fn write_dest(&mut self, id: u32, dest: &Dest) -> Result<()>;
    /// Connections the program counted in for slot `id`.
    fn counted_in(&self, id: u32) -> Result<DestConns>;
    /// What slot `id` had counted when it was given to its current holder.
    fn released(&self, id: u32) -> Result<DestConns>;
    /// Sets what slot `id` had counted when it was given to its current holder.
    fn write_released(&mut self, id: u32, released: &DestConns) -> Result<()>;

    /// The real servers in slots `ids`. The data plane does the `_at` operations in batches
    /// (a read in one system call per run of consecutive slots, a write in one); by default
    /// they loop over the one-slot operations.
    fn dests_at(&self, ids: &[u32]) -> Result<Vec<Dest>> {
        ids.iter().map(|id| self.dest(*id)).collect()
    }
    /// Writes `dests[i]` into slot `ids[i]` (as many of each), in order; on failure the earlier
    /// ones are written.
    fn write_dests_at(&mut self, ids: &[u32], dests: &[Dest]) -> Result<()> {
        ids.iter()
            .zip(dests)
            .try_for_each(|(id, d)| self.write_dest(*id, d))
    }
    /// Connections the program counted in for slots `ids`.
    fn counted_in_at(&self, ids: &[u32]) -> Result<Vec<DestConns>> {
        ids.iter().map(|id| self.counted_in(*id)).collect()
    }
    /// What slots `ids` had counted when they were given to their current holders.
    fn released_at(&self, ids: &[u32]) -> Result<Vec<DestConns>> {
        ids.iter().map(|id| self.released(*id)).collect()
    }
    /// Sets `released[i]` for slot `ids[i]`, in order; on failure the earlier ones are set.
    fn write_released_at(&mut self, ids: &[u32], released: &[DestConns]) -> Result<()> {
        ids.iter()
            .zip(released)
            .try_for_each(|(id, r)| self.write_released(*id, r))
    }

    /// Writes real server ids into the list pool from `offset`.
    fn write_list(&mut self, offset: u32, ids: &[u32]) -> Result<()>;
    /// Writes bucket entries (dest ids, `u32::MAX` for none) into the table pool from `offset`.
    fn write_table(&mut self, offset: u32, buckets: &[u32]) -> Result<()>;
    /// The rr/wrr state of service `id`.
    fn sched(&self, id: u32) -> Result<SchedState>;
    /// Writes the rr/wrr state of service `id`.
    fn write_sched(&mut self, id: u32, state: &SchedState) -> Result<()>;

    /// The service under `key`, if the map has it.
    fn service(&self, key: &ServiceKey) -> Result<Option<Service>>;
    /// Every service key in the map.
    fn service_keys(&self) -> Result<Vec<ServiceKey>>;
    /// Writes a service: the one write that switches packets to its list and table.
    fn write_service(&mut self, key: &ServiceKey, svc: &Service) -> Result<()>;
    /// Removes a service.
    fn remove_service(&mut self, key: &ServiceKey) -> Result<()>;

    /// Every flow in the connection table (claimed ones included, until they are removed).
    fn flows(&self) -> Result<Vec<(FlowKey, Flow)>>;
    /// Every persistence template (claimed ones included, until they are removed).
    fn templates(&self) -> Result<Vec<(PersistKey, Persist)>>;
    /// Sets the idle timeout of each connection state.
    fn write_timeouts(&mut self, timeouts: &Timeouts) -> Result<()>;
    /// Sets the persistence of service `id` (all zero: not persistent), by which its
    /// templates expire.
    fn write_template_rule(&mut self, id: u32, rule: &TemplateRule) -> Result<()>;
    /// Removes the flows and templates idle past their timeouts, counting the flows out of
    /// their real servers (the program's sweeper, at the kernel's current time).
    fn expire(&mut self) -> Result<()>;
    /// Every lblc/lblcr cache entry.
    fn localities(&self) -> Result<Vec<(LocalityKey, Locality)>>;
    /// Removes an lblc/lblcr cache entry.
    fn remove_locality(&mut self, key: &LocalityKey) -> Result<()>;

    /// Traffic of service `id`, summed over CPUs.
    fn service_traffic(&self, id: u32) -> Result<Traffic>;
    /// Traffic of real server slot `id`, summed over CPUs.
    fn dest_traffic(&self, id: u32) -> Result<Traffic>;
    /// Traffic of real server slots `ids`, each summed over CPUs.
    fn dest_traffic_at(&self, ids: &[u32]) -> Result<Vec<Traffic>> {
        ids.iter().map(|id| self.dest_traffic(*id)).collect()
    }
    /// The global counters, summed over CPUs.
    fn globals(&self) -> Result<Vec<(Global, u64)>>;
    /// The decisions the program reported since the last call.
    fn events(&mut self) -> Result<Vec<Event>>;

    /// Returns once no packet can still be using a service value replaced or removed before
    /// the call (an RCU grace period), so that the lists, tables and slots it pointed at can
    /// be given out again.
    fn synchronize(&mut self) -> Result<()>;
}

/// Live connection counts of slot `id`: counted in and out by the program, minus what the
/// slot had counted when its current holder got it.
pub fn live_conns(maps: &impl Maps, id: u32) -> Result<DestConns> {
    Ok(maps.counted_in(id)?.minus(&maps.released(id)?))
}

/// [`live_conns`] of slots `ids`.
pub fn live_conns_at(maps: &impl Maps, ids: &[u32]) -> Result<Vec<DestConns>> {
    let released = maps.released_at(ids)?;
    Ok(maps
        .counted_in_at(ids)?
        .iter()
        .zip(&released)
        .map(|(c, r)| c.minus(r))
        .collect())
}

#[cfg(test)]
pub mod fake {
    //! An in-memory data plane: maps as plain collections, with a switch that makes the
    //! n-th write fail, and a record of every synchronisation.

    use std::collections::BTreeMap;

    use anyhow::{Result, bail};
    use lb_common::{
        dest::{Dest, DestConns},
        event::Event,
        expiry::TemplateRule,
        flow::{Flow, FlowKey, Persist, PersistKey},
        sched::locality::{Locality, LocalityKey},
        service::{SchedState, Service, ServiceKey},
        state::Timeouts,
        stats::{Global, Traffic},
    };

    use super::Maps;

    /// The fake's maps.
    #[derive(Debug, Default)]
    pub struct FakeMaps {
        /// DESTS.
        pub dests: BTreeMap<u32, Dest>,
        /// DEST_CONNS.
        pub counted_in: BTreeMap<u32, DestConns>,
        /// DEST_RELEASED.
        pub released: BTreeMap<u32, DestConns>,
        /// SERVICE_DESTS.
        pub lists: BTreeMap<u32, u32>,
        /// SERVICE_TABLES.
        pub tables: BTreeMap<u32, u32>,
        /// SERVICES.
        pub services: BTreeMap<ServiceKey, Service>,
        /// SERVICE_SCHED.
        pub sched: BTreeMap<u32, SchedState>,
        /// FLOWS.
        pub flows: BTreeMap<FlowKey, Flow>,
        /// PERSIST.
        pub templates: BTreeMap<PersistKey, Persist>,
        /// TIMEOUTS.
        pub timeouts: Option<Timeouts>,
        /// TEMPLATE_RULES.
        pub template_rules: BTreeMap<u32, TemplateRule>,
        /// Runs of the sweeper.
        pub expiries: usize,
        /// LOCALITY.
        pub localities: BTreeMap<LocalityKey, Locality>,
        /// SERVICE_STATS and DEST_STATS.
        pub traffic: BTreeMap<(bool, u32), Traffic>,
        /// Writes left before one fails (`None`: never).
        pub fail_after: Option<usize>,
        /// Writes done.
        pub writes: usize,
        /// Synchronisations done.
        pub syncs: usize,
    }

    impl FakeMaps {
        fn write(&mut self) -> Result<()> {
            if let Some(n) = self.fail_after {
                if n == 0 {
                    bail!("injected map write failure");
                }
                self.fail_after = Some(n - 1);
            }
            self.writes += 1;
            Ok(())
        }

        /// The list of the service under `key`, as a packet would read it.
        pub fn list_of(&self, key: &ServiceKey) -> Vec<u32> {
            let svc = self.services[key];
            (0..svc.dest_count)
                .map(|i| self.lists[&(svc.dests_offset + i)])
                .collect()
        }

        /// The table of the service under `key`, as a packet would read it.
        pub fn table_of(&self, key: &ServiceKey) -> Vec<u32> {
            let svc = self.services[key];
            (0..svc.table_size)
                .map(|i| self.tables[&(svc.table_offset + i)])
                .collect()
        }
    }

    impl Maps for FakeMaps {
        fn set_director(&mut self, _mac: [u8; 6], _debug: bool) -> Result<()> {
            self.write()
        }
        fn dest(&self, id: u32) -> Result<Dest> {
            Ok(self.dests.get(&id).copied().unwrap_or_default())
        }
        fn write_dest(&mut self, id: u32, dest: &Dest) -> Result<()> {
            self.write()?;
            self.dests.insert(id, *dest);
            Ok(())
        }
        fn counted_in(&self, id: u32) -> Result<DestConns> {
            Ok(self.counted_in.get(&id).copied().unwrap_or_default())
        }
        fn released(&self, id: u32) -> Result<DestConns> {
            Ok(self.released.get(&id).copied().unwrap_or_default())
        }
        fn write_released(&mut self, id: u32, released: &DestConns) -> Result<()> {
            self.write()?;
            self.released.insert(id, *released);
            Ok(())
        }
        fn write_list(&mut self, offset: u32, ids: &[u32]) -> Result<()> {
            for (i, id) in (offset..).zip(ids) {
                self.write()?;
                self.lists.insert(i, *id);
            }
            Ok(())
        }
        fn write_table(&mut self, offset: u32, buckets: &[u32]) -> Result<()> {
            for (i, b) in (offset..).zip(buckets) {
                self.write()?;
                self.tables.insert(i, *b);
            }
            Ok(())
        }
        fn sched(&self, id: u32) -> Result<SchedState> {
            Ok(self.sched.get(&id).copied().unwrap_or_default())
        }
        fn write_sched(&mut self, id: u32, state: &SchedState) -> Result<()> {
            self.write()?;
            self.sched.insert(id, *state);
            Ok(())
        }
        fn service(&self, key: &ServiceKey) -> Result<Option<Service>> {
            Ok(self.services.get(key).copied())
        }
        fn service_keys(&self) -> Result<Vec<ServiceKey>> {
            Ok(self.services.keys().copied().collect())
        }
        fn write_service(&mut self, key: &ServiceKey, svc: &Service) -> Result<()> {
            self.write()?;
            self.services.insert(*key, *svc);
            Ok(())
        }
        fn remove_service(&mut self, key: &ServiceKey) -> Result<()> {
            self.write()?;
            self.services.remove(key);
            Ok(())
        }
        fn flows(&self) -> Result<Vec<(FlowKey, Flow)>> {
            Ok(self.flows.iter().map(|(k, v)| (*k, *v)).collect())
        }
        fn templates(&self) -> Result<Vec<(PersistKey, Persist)>> {
            Ok(self.templates.iter().map(|(k, v)| (*k, *v)).collect())
        }
        fn write_timeouts(&mut self, timeouts: &Timeouts) -> Result<()> {
            self.write()?;
            self.timeouts = Some(*timeouts);
            Ok(())
        }
        fn write_template_rule(&mut self, id: u32, rule: &TemplateRule) -> Result<()> {
            self.write()?;
            self.template_rules.insert(id, *rule);
            Ok(())
        }
        fn expire(&mut self) -> Result<()> {
            self.expiries += 1;
            Ok(())
        }
        fn localities(&self) -> Result<Vec<(LocalityKey, Locality)>> {
            Ok(self.localities.iter().map(|(k, v)| (*k, *v)).collect())
        }
        fn remove_locality(&mut self, key: &LocalityKey) -> Result<()> {
            self.write()?;
            self.localities.remove(key);
            Ok(())
        }
        fn service_traffic(&self, id: u32) -> Result<Traffic> {
            Ok(self.traffic.get(&(true, id)).copied().unwrap_or_default())
        }
        fn dest_traffic(&self, id: u32) -> Result<Traffic> {
            Ok(self.traffic.get(&(false, id)).copied().unwrap_or_default())
        }
        fn globals(&self) -> Result<Vec<(Global, u64)>> {
            Ok(Global::ALL.iter().map(|g| (*g, 0)).collect())
        }
        fn events(&mut self) -> Result<Vec<Event>> {
            Ok(Vec::new())
        }
        fn synchronize(&mut self) -> Result<()> {
            self.syncs += 1;
            Ok(())
        }
    }
}
