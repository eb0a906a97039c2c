//! Health checks of real servers, as keepalived's checker runs them.

pub mod check;
mod http;
mod misc;
pub mod model;
pub mod monitor;
pub mod runner;
mod tls;
