//! SQL for the identity service: one module per resource, functions named
//! `resource_verb`. Reads take the pool; writes take a transaction so that a
//! handler can group several changes (and the revision bump) atomically.

pub mod app_creds;
pub mod assignments;
pub mod catalog;
pub mod credentials;
pub mod domains;
pub mod extensions;
pub mod groups;
pub mod limits;
pub mod projects;
pub mod revocations;
pub mod roles;
pub mod users;

pub use store::{Db, Tx};

/// `$start, $start+1, ...` for `n` parameters.
pub fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_count_from_start() {
        assert_eq!(super::placeholders(2, 3), "$2, $3, $4");
        assert_eq!(super::placeholders(1, 0), "");
    }
}
