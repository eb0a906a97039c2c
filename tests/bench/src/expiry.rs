//! The connection table's life: what the daemon's periodic work costs with the table full of
//! live flows (its in-kernel sweep walks every entry once a second), and how long expiring a
//! full table at once takes, with the real servers' connection counts checked to be 0 after.

use std::time::Duration;

use anyhow::{Result, ensure};
use lb_common::state::{STATE_COUNT, Timeouts, tcp_flags::ACK};
use lb_userspace::{
    dataplane::{DataPlane, monotonic_ns},
    engine::Engine,
    maps::{Maps, live_conns},
    neigh::Neighbour,
};

use crate::{Extra, Figure, Measured, Plan, VIP, balancer, client_flow, frame_from, spec, time};

/// CPU time of the calling thread, which is charged with the kernel time of its
/// BPF_PROG_TEST_RUN calls.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The figure in ms with its share of one core if it is work done once a second.
fn measured(f: Figure, each_second: bool) -> Measured {
    let share = f.median / 10.0;
    Measured {
        figure: f,
        extras: vec![Extra {
            header: "% of a core",
            key: "core_percent",
            value: if each_second { share } else { 0.0 },
            text: if each_second {
                format!("{share:.2}")
            } else {
                "once".to_owned()
            },
        }],
    }
}

/// The daemon's tick in CPU ms with an empty table (the baseline) and with each of
/// `plan.expiry_flows` established flows in the default 1M-entry table; then one sweep that
/// expires the largest table whole, after which every connection count must be 0.
pub fn expiry(plan: &Plan, progress: &mut dyn FnMut(&Figure)) -> Result<Vec<Measured>> {
    let spec = spec(lb_common::sched::Scheduler::Rr, 2);
    let neighbours = || {
        spec.dests
            .iter()
            .enumerate()
            .map(|(i, d)| {
                (
                    d.addr,
                    Neighbour {
                        mac: [2, 0, 0, 1, 0, i as u8],
                    },
                )
            })
            .collect()
    };
    let dp = DataPlane::load(
        None,
        lb_common::DEFAULT_MAX_FLOWS,
        lb_common::DEFAULT_MAX_TEMPLATES,
    )?;
    let mut engine = Engine::new(dp, lb_common::DEFAULT_MAX_FLOWS, Timeouts::default());
    engine.maps_mut().set_director(crate::DIRECTOR_MAC, false)?;
    engine.set_neighbours(neighbours(), false)?;
    engine.apply(std::slice::from_ref(&spec))?;
    let mut rows = Vec::new();
    let mut filled = 0;
    for &n in [0].iter().chain(plan.expiry_flows) {
        for i in filled..n {
            let (src, port) = client_flow(i);
            time(balancer(engine.maps()), &frame_from(src, port, ACK, VIP), 1)?;
        }
        filled = n;
        let name = match n {
            0 => "baseline: daemon tick, empty table".to_owned(),
            n => format!("daemon tick, {n} live flows"),
        };
        let mut samples = Vec::with_capacity(plan.runs);
        for _ in 0..plan.runs {
            let start = thread_cpu();
            engine.tick(monotonic_ns(), neighbours())?;
            samples.push((thread_cpu() - start).as_secs_f64() * 1e3);
        }
        let live = engine.maps().flows()?.len();
        ensure!(live == n as usize, "{live} flows in the table for {n}");
        let f = Figure::of(name, samples, 0);
        progress(&f);
        rows.push(measured(f, true));
    }
    // Every state's timeout 1 s: after 2 s the whole table is idle.
    engine
        .maps_mut()
        .write_timeouts(&Timeouts([1; STATE_COUNT]))?;
    std::thread::sleep(Duration::from_secs(2));
    let start = thread_cpu();
    engine.maps_mut().expire()?;
    let took = (thread_cpu() - start).as_secs_f64() * 1e3;
    let maps = engine.maps();
    ensure!(maps.flows()?.is_empty(), "flows left after expiry");
    for &id in engine.installed().services.iter().flat_map(|s| &s.dest_ids) {
        let c = live_conns(maps, id)?;
        ensure!(
            (c.active, c.inactive) == (0, 0),
            "real server {id}: {} active, {} inactive after expiry",
            c.active,
            c.inactive
        );
    }
    let f = Figure::of(
        format!("one sweep expiring all {filled} flows (counts 0 after)"),
        vec![took],
        0,
    );
    progress(&f);
    rows.push(measured(f, false));
    Ok(rows)
}
