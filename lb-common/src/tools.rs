//! Names in the helper object of the test beds and the benchmark (`xdpvs-tools.bpf.o`, built
//! from lb-ebpf-tools). The daemon never loads it.

/// Names of the helper object's programs.
pub mod program_names {
    /// Passes every packet; attached to a veth peer so that native XDP_TX works on veth.
    pub const PASS: &str = "xdpvs_pass";
    /// Swaps MAC addresses and returns XDP_TX: the benchmark baseline.
    pub const MAC_SWAP: &str = "xdpvs_mac_swap";
    /// The benchmark's live-frame generator ([`crate::generator`]).
    pub const GENERATOR: &str = "xdpvs_bench_gen";
    /// Counts and drops what the director sent back to the generator.
    pub const SINK: &str = "xdpvs_bench_sink";
}

/// Names of the helper object's maps (none is pinned).
pub mod map_names {
    /// The generator's settings: [`crate::generator::Generator`].
    pub const GENERATOR: &str = "GENERATOR";
    /// Per-CPU generator counters by [`crate::generator::Counter`].
    pub const GENERATOR_COUNTERS: &str = "GENERATOR_COUNTERS";
}
