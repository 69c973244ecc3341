//! In-memory placement engine: provider state, allocation-candidate search
//! and provider-filter search with upstream OpenStack Placement 16.0.0
//! semantics (microversions 1.0 to 1.39). Pure Rust: no database, no HTTP,
//! no async.
//!
//! Flow for `GET /allocation_candidates`:
//! [`parse_candidates_query`] (schema and value checks) ->
//! [`Model::allocation_candidates`] (unknown class/trait checks, search) ->
//! [`render_candidates`].
//! For `GET /resource_providers`: [`parse_providers_query`] ->
//! [`Model::providers_matching`].
//!
//! Errors are [`QueryError`]s (status 400, upstream's message and error
//! code). Query-string checks happen in the parsers; the checks that need
//! the model (unknown resource class or trait) happen in the searches, in
//! upstream's order (so a group that matches nothing hides the errors of
//! later groups, as upstream does).
//!
//! Keeping the model current: [`Model::set_resource_classes`] and
//! [`Model::set_traits`] declare every class/trait that exists (pass traits
//! in creation order, i.e. by database id: provider summaries list a
//! provider's traits standard-first, then in that order);
//! [`Model::upsert_provider`] / [`Model::upsert_providers`] /
//! [`Model::replace_all`] load providers in any order (parents may come
//! after children; roots of whole subtrees are recomputed on re-parenting);
//! [`Model::set_usages`] / [`Model::add_usage`] update allocation sums;
//! [`Model::remove_provider`] deletes. All single-provider updates are
//! O(size of the provider + log n), never a rebuild.
//!
//! For large answers prefer [`render_candidates_json`] (a ready JSON
//! string) over [`render_candidates`] (a `serde_json::Value`).

mod bitset;
mod model;
pub mod perfload;
mod pyrepr;
mod query;
mod render;
mod search;

pub use model::{Inventory, Model, ProviderRecord};
pub use query::{
    is_uuid_like, parse_candidates_query, parse_providers_query, parse_resources,
    parse_traits_value, CandidatesRequest, ProvidersFilter, QueryError, RequestGroup,
    CODE_BAD_VALUE, CODE_DEFAULT, CODE_DUPLICATE_KEY, CODE_MISSING_VALUE,
};
pub use render::{render_candidates, render_candidates_json};
pub use search::{AllocationRequest, Candidates, ProviderSummary};
