//! Test beds for xdpvs: packet builders, network namespaces with a direct-routing topology,
//! small servers that name themselves, and the daemon run inside a namespace. Shared by the
//! end-to-end tests and by `cargo xtask demo`.

pub mod bench;
pub mod capture;
pub mod cluster;
pub mod daemon;
pub mod demo;
pub mod direct;
pub mod netns;
pub mod packets;
pub mod servers;
pub mod tools;
pub mod topology;
