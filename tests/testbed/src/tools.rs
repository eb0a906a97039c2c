//! The helper XDP object (lb-ebpf-tools): the pass-through for veth peers, the MAC-swap
//! baseline, and the benchmark's generator and sink.

use anyhow::{Context, Result, bail};
use aya::{Ebpf, programs::Xdp};

/// The helper object, embedded at build time (empty when it was not built).
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdpvs-tools.bpf.o"));

/// Loads the object and the programs `names` (checked by the verifier).
pub fn load(names: &[&str]) -> Result<Ebpf> {
    if OBJECT.is_empty() {
        bail!("built without the helper XDP object: build it with `cargo xtask build`");
    }
    let mut ebpf = Ebpf::load(OBJECT).context("loading the helper XDP object")?;
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
