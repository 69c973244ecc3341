//! SQL of the compute service, one module per resource family.

pub mod aggregates;
pub mod flavors;
pub mod instances;
pub mod keypairs;
pub mod quotas;
pub mod server_groups;

pub use store::{Db, Tx};
