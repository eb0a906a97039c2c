//! Services written straight into a private data plane, bypassing the daemon: for the
//! in-kernel packet tests and the benchmark, with given MACs instead of neighbour resolution.

use anyhow::Result;
use lb_common::dest::{DEST_F_RESOLVED, Dest};
use lb_userspace::{dataplane::DataPlane, model::ServiceSpec};

/// Table pool room given to each service (the largest Maglev table).
const TABLE_STRIDE: u32 = 131_072;

/// Writes `specs` as services 0, 1, ... with real servers in dest slots 0, 1, ... in order.
/// `mac(i)` is the MAC of a service's `i`-th real server, `None` for one not resolved.
pub fn install(
    dp: &mut DataPlane,
    specs: &[ServiceSpec],
    mac: impl Fn(usize) -> Option<[u8; 6]>,
) -> Result<()> {
    let mut next_dest = 0;
    for (id, spec) in specs.iter().enumerate() {
        let mut ids = Vec::with_capacity(spec.dests.len());
        for (i, d) in spec.dests.iter().enumerate() {
            let generation = dp.claim_dest(next_dest)?;
            let dest = Dest {
                addr: u32::from_ne_bytes(d.addr.octets()),
                weight: d.weight,
                generation,
                flags: if mac(i).is_some() { DEST_F_RESOLVED } else { 0 },
                mac: mac(i).unwrap_or_default(),
                ..Dest::default()
            };
            dp.write_dest(next_dest, &dest)?;
            ids.push(next_dest);
            next_dest += 1;
        }
        let id = id as u32;
        dp.write_service(
            spec.addr.map_key(),
            spec.map_value(id, id * lb_common::MAX_DESTS_PER_SERVICE, id * TABLE_STRIDE),
            &ids,
            spec.table().as_deref(),
        )?;
    }
    Ok(())
}
