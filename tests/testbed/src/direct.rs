//! Services written into a private data plane by the daemon's engine, without a daemon: for
//! the in-kernel packet tests and the benchmark, with given MACs instead of neighbour
//! resolution.

use std::collections::HashMap;

use anyhow::Result;
use lb_common::state::Timeouts;
use lb_userspace::{dataplane::DataPlane, engine::Engine, model::ServiceSpec, neigh::Neighbour};

/// Installs `specs` as services 0, 1, ... with real servers in dest slots 0, 1, ... in order.
/// `mac(i)` is the MAC of a service's `i`-th real server, `None` for one not resolved.
pub fn install(
    dp: DataPlane,
    specs: &[ServiceSpec],
    mac: impl Fn(usize) -> Option<[u8; 6]>,
) -> Result<DataPlane> {
    let neighbours: HashMap<_, _> = specs
        .iter()
        .flat_map(|s| s.dests.iter().enumerate())
        .filter_map(|(i, d)| Some((d.addr, Neighbour { mac: mac(i)? })))
        .collect();
    let mut engine = Engine::new(dp, 0, Timeouts::default());
    engine.set_neighbours(neighbours, false)?;
    engine.apply(specs)?;
    Ok(engine.into_maps())
}
