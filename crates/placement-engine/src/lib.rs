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
