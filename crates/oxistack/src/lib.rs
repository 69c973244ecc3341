//! The oxistack binary's library half: configuration, the HTTP server and
//! the all-in-one `up` command, kept here so that tests can run them in
//! process.

pub mod cloud;
pub mod config;
pub mod framing;
pub mod host_agent;
pub mod server;
