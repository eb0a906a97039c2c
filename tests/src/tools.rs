//! The XDP object loaded for its helper programs (pass-through, MAC swap, the benchmark's
//! generator and sink) with one-entry connection tables, so that it costs no memory.

use anyhow::{Context, Result};
use aya::{Ebpf, EbpfLoader, programs::Xdp};
use lb_common::map_names;

/// Loads the object and the programs `names` (checked by the verifier).
pub fn load(names: &[&str]) -> Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(map_names::FLOWS, 1)
        .map_max_entries(map_names::PERSIST, 1)
        .load(lb_userspace::EBPF_OBJECT)
        .context("loading the XDP object (built by `cargo xtask build`?)")?;
    for name in names {
        program(&mut ebpf, name)?
            .load()
            .with_context(|| format!("loading program {name}"))?;
    }
    Ok(ebpf)
}

/// The object's XDP program `name`.
pub fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing"))?
        .try_into()?)
}
