//! SQL of the compute service, one module per resource family.

pub mod flavors;
pub mod instances;
pub mod keypairs;

pub use store::{Db, Tx};
