//! The xdpvs integration tests, linked into one binary and run as root: the XDP program
//! driven with BPF_PROG_TEST_RUN, and xdpvsd with xdpvsadm in network-namespace clusters.
//! Every test builds its own namespaces and daemon.

mod adm;
mod control_socket;
mod datapath;
mod e2e;
mod expiry;
mod failover;
mod fragments;
mod generator;
mod health;
mod hostile;
mod icmp;
mod ipv6;
mod keepalived;
mod neigh;
mod pmtu;
mod race;
mod reload;
mod restart;
mod scheduling;
