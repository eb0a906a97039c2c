//! Health checks of real servers, as keepalived's checker runs them.

pub mod model;
