//! The xdpvs control plane: the daemon `xdpvsd`, which owns the XDP program and its maps, and
//! `xdpvsadm`, its ipvsadm-compatible command line.

pub mod cli;
pub mod config;
pub mod control;
pub mod control_server;
pub mod counters;
pub mod daemon;
pub mod dataplane;
pub mod edit;
pub mod engine;
pub mod ha;
pub mod health;
pub mod iface;
#[cfg(test)]
mod input_properties;
pub mod ipvsadm_format;
pub mod keepalived;
pub mod listing;
pub mod locality;
pub mod maps;
pub mod metrics;
pub mod model;
pub mod neigh;
pub mod pools;
pub mod reconcile;
pub mod rs_setup;
pub mod run;
pub mod saved;

/// The XDP object, as built by `cargo xtask build-ebpf` (empty if it was not built).
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdpvs.bpf.o"));

/// Default directory of the pinned maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/xdpvs";
/// Default path of the daemon's control socket.
pub const DEFAULT_SOCKET: &str = "/run/xdpvs/xdpvsd.sock";
/// Default path of the daemon's saved bookkeeping (next to the socket, on tmpfs like bpffs).
pub const DEFAULT_STATE_FILE: &str = "/run/xdpvs/state.json";
