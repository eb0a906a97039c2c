//! The reconciler: what the maps hold ([`Installed`]) and what the operator wants (services)
//! become a [`Plan`], a list of steps, with every id and pool region chosen on copies of the
//! pools before anything is written. A plan that cannot fit is refused whole. Pure: the engine
//! carries the steps out against the maps and records each one as it succeeds.
//!
//! A changed service gets a new list region and a new table region, written before the one
//! SERVICES write that switches packets to them; what it no longer uses (regions, real server
//! slots, a removed service's id) is retired, and given out again only after a
//! [`Step::Synchronize`], once no packet can still be reading the old service.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::IpAddr,
};

use lb_common::{LIST_POOL_SIZE, MAX_DESTS, MAX_SERVICES, TABLE_POOL_SIZE};
use serde::{Deserialize, Serialize};

use crate::{
    model::{self, DestSpec, ServiceAddr, ServiceSpec, SpecError},
    pools::{IdPool, RegionPool},
};

/// A region of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// First entry.
    pub offset: u32,
    /// Number of entries.
    pub len: u32,
}

/// A service as installed in the maps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstalledService {
    /// Its settings and real servers.
    pub spec: ServiceSpec,
    /// Its service id.
    pub id: u32,
    /// The slots of its real servers, in list order.
    pub dest_ids: Vec<u32>,
    /// Its real server list in the list pool.
    pub list: Region,
    /// Its bucket table in the table pool (empty for schedulers without one).
    pub table: Region,
    /// A step of a change that did not finish touched its real servers: the maps may differ
    /// from `spec`, so the next plan writes the service anew.
    #[serde(default)]
    pub stale: bool,
}

/// What no service uses any more but a packet may still be reading: free after the next
/// synchronisation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Retired {
    /// Service ids.
    pub service_ids: Vec<u32>,
    /// Real server slots, taken out of service.
    pub dest_ids: Vec<u32>,
    /// Real server slots no list holds that still have to be taken out of service.
    pub lost: Vec<u32>,
    /// List pool regions.
    pub lists: Vec<Region>,
    /// Table pool regions.
    pub tables: Vec<Region>,
}

impl Retired {
    fn is_empty(&self) -> bool {
        self.service_ids.is_empty()
            && self.dest_ids.is_empty()
            && self.lost.is_empty()
            && self.lists.is_empty()
            && self.tables.is_empty()
    }

    fn service(&mut self, s: &InstalledService) {
        self.service_ids.push(s.id);
        self.lost.extend(&s.dest_ids);
        self.regions(s);
    }

    fn regions(&mut self, s: &InstalledService) {
        self.lists.push(s.list);
        self.tables.push(s.table);
    }
}

/// The daemon's record of the maps: the installed services in list order and what is retired.
/// Ids and regions that neither holds are free.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Installed {
    /// Installed services, in the operator's order.
    pub services: Vec<InstalledService>,
    /// Held until the next synchronisation.
    pub retired: Retired,
}

/// The free ids and regions, derived from an [`Installed`].
#[derive(Clone, Debug)]
struct Pools {
    service_ids: IdPool,
    dest_ids: IdPool,
    lists: RegionPool,
    tables: RegionPool,
}

impl Pools {
    /// The pools with everything `installed` holds taken; `None` if two holders overlap.
    fn of(installed: &Installed) -> Option<Self> {
        let mut p = Self {
            service_ids: IdPool::new(MAX_SERVICES),
            dest_ids: IdPool::new(MAX_DESTS),
            lists: RegionPool::new(LIST_POOL_SIZE),
            tables: RegionPool::new(TABLE_POOL_SIZE),
        };
        let r = &installed.retired;
        let ok = installed.services.iter().all(|s| {
            p.service_ids.take(s.id)
                && s.dest_ids.iter().all(|d| p.dest_ids.take(*d))
                && p.lists.reserve(s.list.offset, s.list.len)
                && p.tables.reserve(s.table.offset, s.table.len)
        }) && r.service_ids.iter().all(|i| p.service_ids.take(*i))
            && r.dest_ids
                .iter()
                .chain(&r.lost)
                .all(|i| p.dest_ids.take(*i))
            && r.lists.iter().all(|g| p.lists.reserve(g.offset, g.len))
            && r.tables.iter().all(|g| p.tables.reserve(g.offset, g.len));
        ok.then_some(p)
    }

    /// Gives everything retired back.
    fn release(&mut self, retired: &mut Retired) {
        for id in retired.service_ids.drain(..) {
            self.service_ids.free(id);
        }
        for id in retired.dest_ids.drain(..) {
            self.dest_ids.free(id);
        }
        for g in retired.lists.drain(..) {
            self.lists.free(g.offset, g.len);
        }
        for g in retired.tables.drain(..) {
            self.tables.free(g.offset, g.len);
        }
    }
}

/// One step of a plan, in the order it must be carried out.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Gives slot `id` to a new real server (a new generation, connection counts from zero).
    ClaimDest {
        /// The slot.
        id: u32,
        /// Its settings.
        spec: DestSpec,
    },
    /// New weight and thresholds for the real server in slot `id`.
    UpdateDest {
        /// The slot.
        id: u32,
        /// Its settings.
        spec: DestSpec,
    },
    /// Writes a real server list into a free region of the list pool.
    WriteList {
        /// Where.
        offset: u32,
        /// Dest ids in list order.
        ids: Vec<u32>,
    },
    /// Writes a bucket table into a free region of the table pool.
    WriteTable {
        /// Where.
        offset: u32,
        /// Dest id per bucket (`u32::MAX`: empty).
        buckets: Vec<u32>,
    },
    /// Points the service at its new list and table: the one SERVICES write. What the service
    /// had before (regions, real servers it lost) is retired.
    Switch {
        /// The service as it is from now on.
        service: InstalledService,
        /// Whether it is a new service (its counters start from zero).
        new: bool,
    },
    /// Takes a real server that no service lists any more out of service: a new generation
    /// (its flows and templates no longer match), no MAC. Until this is done its slot is
    /// recorded as lost, and every plan starts by retiring what is lost.
    RetireDest {
        /// The slot.
        id: u32,
    },
    /// Removes a service; its id and regions are retired, its slots are to be retired.
    Remove {
        /// Which.
        addr: ServiceAddr,
    },
    /// Waits until no packet can still read a retired list, table or slot; they are free after.
    Synchronize,
}

/// The steps that turn the installed services into the wanted ones.
pub type Plan = Vec<Step>;

/// Why a plan was refused; nothing was written.
#[derive(Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The wanted services are not valid.
    Invalid(SpecError),
    /// They do not fit: the named resource runs out.
    Full(ServiceAddr, &'static str),
    /// The record of the maps is inconsistent (two holders of one id or region).
    Inconsistent,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "{e}"),
            Self::Full(s, what) => write!(f, "service {s}: no free {what}"),
            Self::Inconsistent => f.write_str("the daemon's record of the maps is inconsistent"),
        }
    }
}

impl std::error::Error for PlanError {}

impl Installed {
    /// The installed service `addr`, if any.
    pub fn get(&self, addr: &ServiceAddr) -> Option<&InstalledService> {
        self.services.iter().find(|s| s.spec.addr == *addr)
    }

    /// The installed services' specs in list order.
    pub fn specs(&self) -> Vec<ServiceSpec> {
        self.services.iter().map(|s| s.spec.clone()).collect()
    }

    /// Whether no two holders share an id or a region.
    pub fn is_consistent(&self) -> bool {
        Pools::of(self).is_some()
    }

    /// Records a step that was carried out.
    pub fn record(&mut self, step: &Step) {
        match step {
            Step::Switch { service, .. } => {
                match self
                    .services
                    .iter_mut()
                    .find(|s| s.spec.addr == service.spec.addr)
                {
                    Some(old) => {
                        let old = std::mem::replace(old, service.clone());
                        self.retired.regions(&old);
                        self.retired.lost.extend(lost_dests(&old, service));
                    }
                    None => self.services.push(service.clone()),
                }
            }
            Step::Remove { addr } => {
                if let Some(i) = self.services.iter().position(|s| s.spec.addr == *addr) {
                    let gone = self.services.remove(i);
                    self.retired.service(&gone);
                }
            }
            Step::RetireDest { id } => {
                self.retired.lost.retain(|l| l != id);
                self.retired.dest_ids.push(*id);
            }
            Step::Synchronize => {
                let lost = std::mem::take(&mut self.retired.lost);
                self.retired = Retired {
                    lost,
                    ..Retired::default()
                };
            }
            Step::UpdateDest { id, .. } => {
                if let Some(s) = self.services.iter_mut().find(|s| s.dest_ids.contains(id)) {
                    s.stale = true;
                }
            }
            Step::ClaimDest { .. } | Step::WriteList { .. } | Step::WriteTable { .. } => {}
        }
    }

    /// Puts the services in the order of `wanted` (after a plan for `wanted` was carried out).
    pub fn order_as(&mut self, wanted: &[ServiceSpec]) {
        self.services.sort_by_key(|s| {
            wanted
                .iter()
                .position(|w| w.addr == s.spec.addr)
                .unwrap_or(usize::MAX)
        });
    }
}

/// The slots of `old` that `new` (the same service) no longer lists, in list order.
fn lost_dests(old: &InstalledService, new: &InstalledService) -> Vec<u32> {
    let kept: HashSet<u32> = new.dest_ids.iter().copied().collect();
    old.dest_ids
        .iter()
        .copied()
        .filter(|d| !kept.contains(d))
        .collect()
}

/// The plan that makes the maps hold `wanted`: unchanged services are not touched, real
/// servers kept in a changed service keep their slots (so their flows stay), removed ones are
/// retired (their flows are rescheduled on their next packet). Everything retired is freed by a
/// synchronisation at the end, or earlier when a pool would otherwise run out.
pub fn plan(current: &Installed, wanted: &[ServiceSpec]) -> Result<Plan, PlanError> {
    model::validate(wanted).map_err(PlanError::Invalid)?;
    let mut pools = Pools::of(current).ok_or(PlanError::Inconsistent)?;
    let mut planner = Planner {
        pools: &mut pools,
        retired: current.retired.clone(),
        steps: Vec::new(),
    };
    // Slots a failed plan left in no list but not yet out of service.
    let lost = std::mem::take(&mut planner.retired.lost);
    planner.retire(&lost);
    for gone in current
        .services
        .iter()
        .filter(|s| !wanted.iter().any(|w| w.addr == s.spec.addr))
    {
        planner.steps.push(Step::Remove {
            addr: gone.spec.addr,
        });
        planner.retired.service(gone);
        planner.retire(&gone.dest_ids);
    }
    for spec in wanted {
        match current.get(&spec.addr) {
            Some(prev) if prev.spec == *spec && !prev.stale => {}
            prev => planner.service(spec, prev)?,
        }
    }
    if !planner.retired.is_empty() {
        planner.steps.push(Step::Synchronize);
    }
    Ok(planner.steps)
}

struct Planner<'a> {
    pools: &'a mut Pools,
    retired: Retired,
    steps: Plan,
}

impl Planner<'_> {
    /// Takes from a pool with `take`; when it runs out and something is retired, synchronises
    /// first and tries again.
    fn alloc<T>(
        &mut self,
        addr: ServiceAddr,
        what: &'static str,
        take: impl Fn(&mut Pools) -> Option<T>,
    ) -> Result<T, PlanError> {
        if let Some(v) = take(self.pools) {
            return Ok(v);
        }
        if self.retired.is_empty() {
            return Err(PlanError::Full(addr, what));
        }
        self.steps.push(Step::Synchronize);
        self.pools.release(&mut self.retired);
        take(self.pools).ok_or(PlanError::Full(addr, what))
    }

    fn region(
        &mut self,
        addr: ServiceAddr,
        what: &'static str,
        len: u32,
        pool: fn(&mut Pools) -> &mut RegionPool,
    ) -> Result<Region, PlanError> {
        let offset = self.alloc(addr, what, |p| pool(p).alloc(len))?;
        Ok(Region { offset, len })
    }

    /// Takes slots out of service; they are free after the next synchronisation.
    fn retire(&mut self, ids: &[u32]) {
        self.retired.lost.retain(|l| !ids.contains(l));
        self.retired.dest_ids.extend(ids);
        self.steps
            .extend(ids.iter().map(|id| Step::RetireDest { id: *id }));
    }

    /// Writes `spec` as a new service, or over `prev` (same identity).
    fn service(
        &mut self,
        spec: &ServiceSpec,
        prev: Option<&InstalledService>,
    ) -> Result<(), PlanError> {
        let addr = spec.addr;
        let id = match prev {
            Some(p) => p.id,
            None => self.alloc(addr, "service id", |p| p.service_ids.alloc())?,
        };
        let mut kept: HashMap<IpAddr, (u32, DestSpec)> = prev
            .map(|p| {
                p.spec
                    .dests
                    .iter()
                    .zip(&p.dest_ids)
                    .map(|(d, id)| (d.addr, (*id, *d)))
                    .collect()
            })
            .unwrap_or_default();
        let mut dest_ids = Vec::with_capacity(spec.dests.len());
        for ds in &spec.dests {
            let id = match kept.remove(&ds.addr) {
                Some((id, old)) => {
                    if old != *ds || prev.is_some_and(|p| p.stale) {
                        self.steps.push(Step::UpdateDest { id, spec: *ds });
                    }
                    id
                }
                None => {
                    let id = self.alloc(addr, "real server slot", |p| p.dest_ids.alloc())?;
                    self.steps.push(Step::ClaimDest { id, spec: *ds });
                    id
                }
            };
            dest_ids.push(id);
        }
        let list = self.region(addr, "room in the list pool", dest_ids.len() as u32, |p| {
            &mut p.lists
        })?;
        self.steps.push(Step::WriteList {
            offset: list.offset,
            ids: dest_ids.clone(),
        });
        let buckets: Option<Vec<u32>> = spec.table().map(|t| {
            t.iter()
                .map(|pos| pos.map_or(u32::MAX, |p| dest_ids[p as usize]))
                .collect()
        });
        let table = self.region(
            addr,
            "room in the table pool",
            buckets.as_ref().map_or(0, |b| b.len() as u32),
            |p| &mut p.tables,
        )?;
        if let Some(buckets) = buckets {
            self.steps.push(Step::WriteTable {
                offset: table.offset,
                buckets,
            });
        }
        let service = InstalledService {
            spec: spec.clone(),
            id,
            dest_ids,
            list,
            table,
            stale: false,
        };
        self.steps.push(Step::Switch {
            new: prev.is_none(),
            service: service.clone(),
        });
        if let Some(prev) = prev {
            self.retired.regions(prev);
            self.retire(&lost_dests(prev, &service));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
