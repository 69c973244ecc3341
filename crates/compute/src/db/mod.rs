//! SQL of the compute service, one module per resource family.

pub use store::{Db, Tx};
