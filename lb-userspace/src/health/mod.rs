//! Health checks of real servers, as keepalived's checker runs them.

pub mod check;
pub mod model;
pub mod monitor;
pub mod runner;
