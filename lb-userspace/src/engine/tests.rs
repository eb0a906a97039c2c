use std::net::{IpAddr, Ipv4Addr};

use lb_common::{
    addr::Addr,
    flow::{Flow, FlowKey},
    service::Service,
    state::ConnState,
};

use lb_common::sched::Scheduler;

use super::*;
use crate::{
    maps::fake::FakeMaps,
    model::{Persistence, ServiceAddr, tcp_service},
};

fn spec(port: u16, scheduler: Scheduler, dests: &[u32]) -> ServiceSpec {
    tcp_service(
        port,
        scheduler,
        dests
            .iter()
            .map(|i| IpAddr::from(Ipv4Addr::from(0x0a01_0000 + i))),
    )
}

fn engine(specs: &[ServiceSpec]) -> Engine<FakeMaps> {
    let mut e = Engine::new(FakeMaps::default(), 1024, Timeouts::default());
    e.apply(specs).unwrap();
    e
}

/// Every service the record holds is in SERVICES as recorded, and nothing else is.
fn assert_record_matches_maps(e: &Engine<FakeMaps>) {
    let m = e.maps();
    assert_eq!(m.services.len(), e.installed().services.len());
    for s in &e.installed().services {
        let v = m.services[&s.spec.addr.map_key()];
        assert_eq!(
            (v.id, v.dests_offset, v.table_offset),
            (s.id, s.list.offset, s.table.offset)
        );
        assert_eq!(m.list_of(&s.spec.addr.map_key()), s.dest_ids);
        if !s.stale {
            let table: Vec<u32> = s
                .spec
                .table()
                .unwrap_or_default()
                .iter()
                .map(|p| p.map_or(u32::MAX, |p| s.dest_ids[p as usize]))
                .collect();
            assert_eq!(m.table_of(&s.spec.addr.map_key()), table);
            for (d, id) in s.spec.dests.iter().zip(&s.dest_ids) {
                let dest = m.dests[id];
                assert_eq!((dest.weight, dest.u_threshold), (d.weight, d.u_threshold));
            }
        }
    }
    assert!(e.installed().is_consistent());
}

fn before_and_after() -> (Vec<ServiceSpec>, Vec<ServiceSpec>) {
    let before = vec![
        spec(80, Scheduler::Sh, &[1, 2, 3]),
        spec(81, Scheduler::Rr, &[4, 5]),
        spec(82, Scheduler::Mh, &[6, 7]),
    ];
    // 80 loses a server, gains one and weighs another anew, 81 is removed, 82 is kept, 83 is
    // new.
    let mut after = vec![
        spec(80, Scheduler::Sh, &[1, 3, 8]),
        spec(82, Scheduler::Mh, &[6, 7]),
        spec(83, Scheduler::Wrr, &[9]),
    ];
    after[0].dests[1].weight = 3;
    (before, after)
}

#[test]
fn a_failed_map_write_leaves_the_record_matching_the_maps() {
    let (before, after) = before_and_after();
    let writes = {
        let mut e = engine(&before);
        let start = e.maps().writes;
        e.apply(&after).unwrap();
        e.maps().writes - start
    };
    for k in 0..writes {
        let mut e = engine(&before);
        e.maps_mut().fail_after = Some(k);
        assert!(e.apply(&after).is_err(), "write {k} of {writes} failed");
        assert_record_matches_maps(&e);
        // The daemon goes on: going back lands, the same change retried lands, removing
        // everything frees all.
        e.maps_mut().fail_after = None;
        e.apply(&before).unwrap();
        assert_record_matches_maps(&e);
        e.apply(&after).unwrap();
        assert_record_matches_maps(&e);
        assert_eq!(e.installed().specs(), after);
        e.apply(&[]).unwrap();
        assert!(e.maps().services.is_empty());
        assert!(
            e.maps()
                .dests
                .values()
                .all(|d| !d.is_resolved() && d.weight == 0)
        );
        assert_eq!(e.installed(), &Installed::default());
    }
}

#[test]
fn a_packet_sees_the_old_service_or_the_new_one_never_a_half_written_list() {
    let (before, after) = before_and_after();
    let key = before[0].addr.map_key();
    let old = engine(&before);
    let (old_value, old_list, old_table) = {
        let m = old.maps();
        (m.services[&key], m.list_of(&key), m.table_of(&key))
    };
    let new = {
        let mut e = engine(&before);
        e.apply(&after).unwrap();
        let m = e.maps();
        (m.services[&key], m.list_of(&key), m.table_of(&key))
    };
    // Stop the change after every write: what a packet could meet at that moment.
    for k in 0.. {
        let mut e = engine(&before);
        let syncs = e.maps().syncs;
        e.maps_mut().fail_after = Some(k);
        let done = e.apply(&after).is_ok();
        let m = e.maps();
        let read = |v: &Service| {
            let list: Vec<u32> = (0..v.dest_count)
                .map(|i| m.lists[&(v.dests_offset + i)])
                .collect();
            let table: Vec<u32> = (0..v.table_size)
                .map(|i| m.tables[&(v.table_offset + i)])
                .collect();
            (list, table)
        };
        // The current value is whole: the old service or the new one.
        let now = m.services[&key];
        assert!(
            (now, read(&now)) == (old_value, (old_list.clone(), old_table.clone()))
                || (now, read(&now)) == (new.0, (new.1.clone(), new.2.clone())),
            "after {k} writes"
        );
        // A packet still holding the old value reads the old list and table until the change
        // has waited for it.
        if m.syncs == syncs {
            assert_eq!(
                read(&old_value),
                (old_list.clone(), old_table.clone()),
                "after {k} writes"
            );
        }
        // Tables hold ids of the list's servers.
        assert!(read(&now).1.iter().all(|b| read(&now).0.contains(b)));
        if done {
            break;
        }
    }
}

#[test]
fn a_refused_edit_writes_nothing() {
    let (before, _) = before_and_after();
    let mut e = engine(&before);
    let writes = e.maps().writes;
    let missing = ServiceAddr {
        port: 99,
        ..before[0].addr
    };
    let edits = [
        crate::edit::Edit::DeleteService(before[1].addr),
        crate::edit::Edit::DeleteService(missing),
    ];
    assert_eq!(e.edit(&edits), Err("No such service".into()));
    // 33 Maglev services of 1024 servers validate but do not fit: refused whole.
    let big: Vec<u32> = (0..1024).collect();
    let too_many: Vec<_> = (0..33)
        .map(|p| spec(1000 + p, Scheduler::Mh, &big))
        .collect();
    let msg = e.apply(&too_many).unwrap_err().to_string();
    assert!(msg.contains("no free room in the table pool"), "{msg}");
    assert_eq!(e.maps().writes, writes);
    assert_eq!(e.installed().specs(), before);
}

#[test]
fn a_successor_adopts_matching_maps_and_drops_what_nobody_accounts_for() {
    let (before, _) = before_and_after();
    let e = engine(&before);
    let saved = e.saved();
    let mut next = Engine::new(e.into_maps(), 1024, Timeouts::default());
    assert!(next.adopt(Some(saved.clone())).unwrap());
    assert_eq!(next.installed().specs(), before);
    assert_record_matches_maps(&next);

    // A state that does not match (a table moved) is not adopted; its services are dropped
    // from the map, so that the configured ones start afresh.
    let mut wrong = saved;
    wrong.services[0].table.offset += 1;
    let mut third = Engine::new(next.into_maps(), 1024, Timeouts::default());
    assert!(!third.adopt(Some(wrong)).unwrap());
    assert!(third.maps().services.is_empty());
    third.apply(&before).unwrap();
    assert_record_matches_maps(&third);
}

#[test]
fn ticks_run_the_sweeper_and_listings_skip_what_it_claimed() {
    let mut e = engine(&[spec(80, Scheduler::Rr, &[1])]);
    let s = &e.installed().services[0];
    let (id, dest) = (s.id, s.dest_ids[0]);
    let generation = e.maps().dests[&dest].generation;
    let flow = |src_addr, last_seen_ns| {
        (
            FlowKey {
                src_addr: Addr::from(Ipv4Addr::from(src_addr)),
                dst_addr: Addr::from(Ipv4Addr::new(10, 0, 0, 1)),
                src_port: 1,
                dst_port: 80,
                proto: 6,
            },
            Flow {
                last_seen_ns,
                dest,
                dest_generation: generation,
                service: id,
                state: ConnState::Established as u32,
            },
        )
    };
    e.maps_mut()
        .flows
        .extend([flow(7u32, 10 * NS), flow(8, TOMBSTONE)]);
    e.tick(0, HashMap::new()).unwrap();
    e.tick(0, HashMap::new()).unwrap();
    assert_eq!(e.maps().expiries, 2);
    let conns = e.connections(910 * NS).unwrap();
    assert_eq!(conns.len(), 1, "the claimed flow is not listed");
    assert_eq!(conns[0].expires, 0);
}

#[test]
fn timeouts_and_persistence_reach_the_sweepers_maps() {
    let mut e = engine(&[]);
    e.set_timeouts(Timeouts::default()).unwrap();
    assert_eq!(e.maps().timeouts, Some(Timeouts::default()));
    e.handle(
        Command::SetTimeouts {
            tcp: 100,
            tcpfin: 0,
            udp: 30,
        },
        0,
    )
    .unwrap();
    let mut expected = Timeouts::default();
    expected.set(100, 0, 30);
    assert_eq!(e.maps().timeouts, Some(expected));

    let mut persistent = spec(80, Scheduler::Rr, &[1]);
    persistent.persistence = Some(Persistence {
        timeout: 300,
        netmask: crate::model::ClientMask::Netmask(Ipv4Addr::new(255, 255, 255, 0)),
    });
    let persistent_spec = persistent.clone();
    e.apply(&[persistent]).unwrap();
    let id = e.installed().services[0].id;
    assert_eq!(
        e.maps().template_rules[&id],
        TemplateRule {
            timeout: 300,
            mask: Addr::v4_netmask(u32::from_ne_bytes([255, 255, 255, 0])),
        }
    );
    // Without persistence its templates expire at the next sweep.
    let mut plain = persistent_spec;
    plain.persistence = None;
    e.apply(&[plain]).unwrap();
    assert_eq!(e.installed().services[0].id, id);
    assert_eq!(e.maps().template_rules[&id].timeout, 0);
}

#[test]
fn neighbours_resolve_real_servers_and_unknown_ones_are_probed() {
    let mut e = engine(&[spec(80, Scheduler::Rr, &[1, 2])]);
    let known = IpAddr::from(Ipv4Addr::from(0x0a01_0001));
    let table = HashMap::from([(
        known,
        Neighbour {
            mac: [2, 0, 0, 0, 0, 1],
        },
    )]);
    let probes = e.set_neighbours(table, false).unwrap();
    assert_eq!(probes, vec![IpAddr::from(Ipv4Addr::from(0x0a01_0002))]);
    let macs: Vec<_> = e.listing(0).unwrap().services[0]
        .dests
        .iter()
        .map(|d| d.mac.clone())
        .collect();
    assert_eq!(macs, vec![Some("02:00:00:00:00:01".to_owned()), None]);
    // A server added later starts with the MAC already known.
    e.apply(&[spec(80, Scheduler::Rr, &[1, 2, 3])]).unwrap();
    assert!(e.maps().dests.values().filter(|d| d.is_resolved()).count() == 1);
}

#[test]
fn health_transitions_overlay_the_configured_services_and_edits_change_the_configured_ones() {
    use crate::health::{
        check::Outcome,
        model::{Check, CheckKind, RealServerHealth, ServiceHealth},
        monitor::{CheckKey, Verdict},
        runner::Report,
    };
    let configured = vec![spec(80, Scheduler::Wrr, &[1, 2])];
    let rs2 = configured[0].dests[1].addr;
    let mut health = ServiceHealth::new(configured[0].addr);
    health.real_servers.push(RealServerHealth {
        addr: rs2,
        inhibit_on_failure: false,
        notify_up: None,
        notify_down: Some("rs2 down".into()),
        checks: vec![Check {
            kind: CheckKind::Tcp,
            connect_ip: None,
            connect_port: None,
            bindto: None,
            delay_loop: std::time::Duration::from_secs(1),
            connect_timeout: std::time::Duration::from_secs(1),
            retry: 1,
            delay_before_retry: std::time::Duration::from_secs(1),
            warmup: None,
        }],
    });
    let mut e = Engine::new(FakeMaps::default(), 1024, Timeouts::default());
    e.apply_with_health(&configured, &[health], 0).unwrap();
    let key = CheckKey {
        service: configured[0].addr,
        server: rs2,
        check: 0,
    };
    let installed = |e: &Engine<FakeMaps>| -> Vec<(IpAddr, u32)> {
        e.installed().services[0]
            .spec
            .dests
            .iter()
            .map(|d| (d.addr, d.weight))
            .collect()
    };
    let rs1 = configured[0].dests[0].addr;
    let down = Report::new(key, Some(Verdict::Fail), Outcome::Down("refused".into()));
    assert!(e.report(&down, NS).unwrap());
    assert_eq!(installed(&e), [(rs1, 1)]);
    assert_eq!(e.take_notifications(), ["rs2 down"]);
    assert_record_matches_maps(&e);
    // The failed server is still configured: `-e` reweighs it, and it stays out.
    let mut heavier = configured[0].dests[1];
    heavier.weight = 5;
    e.edit(&[Edit::EditDest(configured[0].addr, heavier)])
        .unwrap();
    assert_eq!(installed(&e), [(rs1, 1)]);
    let listing = e.listing(3 * NS).unwrap();
    let status = listing.services[0].health.as_ref().unwrap();
    assert!(!status.real_servers[0].up && status.real_servers[0].since_secs == 2);
    // Back up, with the edited weight.
    let up = Report::new(key, Some(Verdict::Pass(None)), Outcome::Up);
    assert!(e.report(&up, 4 * NS).unwrap());
    assert_eq!(installed(&e), [(rs1, 1), (rs2, 5)]);
    assert_record_matches_maps(&e);
    // An attempt that changes no verdict installs nothing.
    let again = Report::new(key, None, Outcome::Up);
    let writes = e.maps().writes;
    assert!(!e.report(&again, 5 * NS).unwrap());
    assert_eq!(e.maps().writes, writes);
}

#[test]
fn added_real_servers_go_to_the_list_head_and_carry_wrr_state_over() {
    let mut e = engine(&[]);
    let svc = spec(80, Scheduler::Wrr, &[]);
    let key = svc.addr.map_key();
    e.edit(&[crate::edit::Edit::AddService(svc.clone())])
        .unwrap();
    for (i, weight) in [(1, 4), (2, 3), (3, 2)] {
        let dest = DestSpec {
            weight,
            ..spec(80, Scheduler::Wrr, &[i]).dests[0]
        };
        e.edit(&[crate::edit::Edit::AddDest(svc.addr, dest)])
            .unwrap();
    }
    let m = e.maps();
    let weights: Vec<u32> = m
        .list_of(&key)
        .iter()
        .map(|id| m.dests[id].weight)
        .collect();
    assert_eq!(weights, [2, 3, 4], "newest first");
    let id = m.services[&key].id;
    // After -a 4 the round starts at 4 - (4 - 1) = 1, and the next adds keep it.
    assert_eq!(
        m.sched[&id],
        SchedState {
            last: u32::MAX,
            cw: 1
        }
    );
    assert_record_matches_maps(&e);
}
