//! Test beds for xdpvs: packet builders, network namespaces with a direct-routing topology,
//! small servers that name themselves, the daemon run inside a namespace, and the helper XDP
//! object. Shared by the integration tests, the benchmark and `cargo xtask demo`.

pub mod capture;
pub mod cluster;
pub mod conformance;
pub mod daemon;
pub mod demo;
pub mod direct;
pub mod keepalived;
pub mod netns;
pub mod packets;
pub mod servers;
pub mod tools;
pub mod topology;
