use std::net::Ipv4Addr;

use lb_common::{TABLE_POOL_SIZE, maglev};

use lb_common::sched::Scheduler;

use super::*;
use crate::model::tcp_service;

fn spec(port: u16, scheduler: Scheduler, dests: u32) -> ServiceSpec {
    tcp_service(
        port,
        scheduler,
        (0..dests).map(|i| Ipv4Addr::from(0x0a01_0000 + i).into()),
    )
}

/// Carries a plan out on the record alone.
fn recorded(mut current: Installed, plan: &Plan) -> Installed {
    for step in plan {
        current.record(step);
    }
    current
}

fn switches(plan: &Plan) -> usize {
    plan.iter()
        .filter(|s| matches!(s, Step::Switch { .. }))
        .count()
}

fn syncs(plan: &Plan) -> usize {
    plan.iter().filter(|s| **s == Step::Synchronize).count()
}

#[test]
fn unchanged_services_are_not_touched_and_a_change_gets_new_regions() {
    let wanted = vec![spec(80, Scheduler::Mh, 3), spec(81, Scheduler::Rr, 2)];
    let p = plan(&Installed::default(), &wanted).unwrap();
    assert_eq!(
        (switches(&p), syncs(&p)),
        (2, 0),
        "nothing to retire: {p:?}"
    );
    let installed = recorded(Installed::default(), &p);
    assert!(plan(&installed, &wanted).unwrap().is_empty());

    let mut changed = wanted.clone();
    changed[0].dests.pop();
    let p = plan(&installed, &changed).unwrap();
    let old = installed.get(&changed[0].addr).unwrap();
    let Some(Step::Switch { service: new, .. }) =
        p.iter().find(|s| matches!(s, Step::Switch { .. }))
    else {
        panic!("no switch in {p:?}")
    };
    let disjoint =
        |a: Region, b: Region| a.offset + a.len <= b.offset || b.offset + b.len <= a.offset;
    assert!(disjoint(old.list, new.list) && disjoint(old.table, new.table));
    assert_eq!(
        new.dest_ids,
        old.dest_ids[..2],
        "kept servers keep their slots"
    );
    // Writes, then the switch, then the lost server, then the grace period.
    assert!(matches!(p[0], Step::WriteList { .. }));
    assert!(matches!(p[1], Step::WriteTable { .. }));
    assert!(matches!(p[2], Step::Switch { new: false, .. }));
    assert_eq!(
        p[3],
        Step::RetireDest {
            id: old.dest_ids[2]
        }
    );
    assert_eq!(p[4], Step::Synchronize);
    let after = recorded(installed, &p);
    assert_eq!(after.retired, Retired::default());
    assert!(after.is_consistent());
}

#[test]
fn tables_hold_dest_ids() {
    let mut s = spec(80, Scheduler::Sh, 3);
    s.dests[1].weight = 2;
    let p = plan(&Installed::default(), &[s]).unwrap();
    let Some(Step::WriteTable { buckets, .. }) =
        p.iter().find(|s| matches!(s, Step::WriteTable { .. }))
    else {
        panic!("no table in {p:?}")
    };
    let Some(Step::Switch { service, .. }) = p.last() else {
        panic!("no switch in {p:?}")
    };
    // sh gives each server `weight` consecutive buckets, in list order.
    let ids = &service.dest_ids;
    assert_eq!(buckets[..4], [ids[0], ids[1], ids[1], ids[2]]);
    assert!(buckets.iter().all(|b| ids.contains(b)));
}

#[test]
fn a_plan_that_does_not_fit_is_refused_before_any_step() {
    // 33 Maglev tables of 1024 servers need 33 x 131071 entries: one more than the pool holds.
    let table = maglev::table_size(1024);
    assert!(32 * table <= TABLE_POOL_SIZE && 33 * table > TABLE_POOL_SIZE);
    let wanted: Vec<_> = (0..33)
        .map(|i| spec(1000 + i, Scheduler::Mh, 1024))
        .collect();
    let e = plan(&Installed::default(), &wanted).unwrap_err();
    assert_eq!(
        e,
        PlanError::Full(wanted[32].addr, "room in the table pool")
    );
    assert!(plan(&Installed::default(), &wanted[..32]).is_ok());
}

#[test]
fn a_reload_needs_room_for_one_table_not_a_second_pool() {
    let table = maglev::table_size(1024);
    let n = (TABLE_POOL_SIZE / table - 1) as u16;
    let wanted: Vec<_> = (0..n)
        .map(|i| spec(1000 + i, Scheduler::Mh, 1024))
        .collect();
    let installed = recorded(
        Installed::default(),
        &plan(&Installed::default(), &wanted).unwrap(),
    );
    // Every service changes: each new table goes where the previous service's old one was,
    // once a synchronisation has made sure no packet reads it.
    let changed: Vec<_> = wanted
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.dests[0].weight = 2;
            s
        })
        .collect();
    let p = plan(&installed, &changed).unwrap();
    assert_eq!(switches(&p), n as usize);
    assert_eq!(
        syncs(&p),
        n as usize,
        "one before each table but the first, one at the end"
    );
    let after = recorded(installed, &p);
    assert!(after.is_consistent());
    assert_eq!(after.specs(), changed);
}

#[test]
fn removed_services_make_room_for_new_ones_after_a_synchronisation() {
    let installed = recorded(
        Installed::default(),
        &plan(&Installed::default(), &[spec(80, Scheduler::Rr, 3)]).unwrap(),
    );
    let p = plan(&installed, &[spec(81, Scheduler::Rr, 3)]).unwrap();
    let retired: Vec<_> = p
        .iter()
        .filter_map(|s| match s {
            Step::RetireDest { id } => Some(*id),
            _ => None,
        })
        .collect();
    let claimed: Vec<_> = p
        .iter()
        .filter_map(|s| match s {
            Step::ClaimDest { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert!(matches!(p[0], Step::Remove { .. }));
    // A slot is not given to another server before the old service's packets are done.
    assert!(retired.iter().all(|id| !claimed.contains(id)), "{p:?}");
    assert_eq!(p.last(), Some(&Step::Synchronize));
    let after = recorded(installed, &p);
    assert_eq!(after.services.len(), 1);
    assert!(after.is_consistent());
}

#[test]
fn invalid_and_inconsistent_input_is_refused() {
    let e = plan(
        &Installed::default(),
        &[spec(80, Scheduler::Rr, 1), spec(80, Scheduler::Rr, 1)],
    )
    .unwrap_err();
    assert!(matches!(e, PlanError::Invalid(_)));
    let one = recorded(
        Installed::default(),
        &plan(&Installed::default(), &[spec(80, Scheduler::Rr, 2)]).unwrap(),
    );
    let mut twice = one.clone();
    let mut clash = one.services[0].clone();
    clash.spec.addr.port = 81;
    twice.services.push(clash);
    assert!(!twice.is_consistent());
    assert_eq!(plan(&twice, &[]).unwrap_err(), PlanError::Inconsistent);
}
