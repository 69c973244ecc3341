//! SQL for the image service: one module per resource, functions named
//! `resource_verb`. Reads take the pool; writes take a transaction so that a
//! handler can group several changes atomically.

pub mod images;
pub mod list;
pub mod members;
pub mod metadefs;
pub mod tasks;
pub mod usage;

pub use store::{Db, Tx};

/// A query parameter of either type the portable schema uses.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Text(String),
    Int(i64),
}

/// Binds `args` in order to a query built with `$N` placeholders.
pub fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// Binds `args` in order to a `query_as` built with `$N` placeholders.
pub fn bind_all_as<'q, O>(
    mut q: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    args: &'q [Arg],
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// `$start, $start+1, ...` for `n` parameters.
pub fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Collects arguments and hands out their placeholders.
#[derive(Default, Debug)]
pub struct Args(pub Vec<Arg>);

impl Args {
    pub fn text(&mut self, s: impl Into<String>) -> String {
        self.0.push(Arg::Text(s.into()));
        format!("${}", self.0.len())
    }

    pub fn int(&mut self, i: i64) -> String {
        self.0.push(Arg::Int(i));
        format!("${}", self.0.len())
    }
}
