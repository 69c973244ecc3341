//! The allocation-candidates search (upstream `AllocationCandidates.
//! get_by_requests` with its research context) and the provider-filter
//! search of `GET /resource_providers`.

use std::collections::HashSet;
use std::sync::Arc;

use crate::bitset::BitSet;
use crate::model::{Model, ProviderRecord, SHARES_TRAIT};
use crate::query::{CandidatesRequest, ProvidersFilter, QueryError, RequestGroup};

/// The result of an allocation-candidates search. Providers, classes,
/// traits and group suffixes are referenced by index into the name tables
/// (`providers`, `classes`, `traits`, `suffixes`); render with
/// [`crate::render_candidates`] or [`crate::render_candidates_json`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Candidates {
    pub allocation_requests: Vec<AllocationRequest>,
    pub provider_summaries: Vec<ProviderSummary>,
    /// Every class named in any group (summaries before 1.27 show only these).
    pub requested_classes: Vec<String>,
    /// Indexes (into `classes`) of `requested_classes`.
    pub requested: Vec<u32>,
    /// Provider uuids, concatenated (see [`Candidates::provider_uuid`]).
    provider_buf: String,
    /// End offset in `provider_buf` of each provider's uuid.
    provider_ends: Vec<u32>,
    /// Whether any provider uuid needs JSON escaping.
    pub(crate) providers_need_escape: bool,
    /// Resource class names.
    pub classes: Vec<Arc<str>>,
    /// Trait names.
    pub traits: Vec<Arc<str>>,
    /// Group suffixes in request order ("" for the unsuffixed group).
    pub suffixes: Vec<Arc<str>>,
}

impl Candidates {
    pub fn provider_uuid(&self, i: u32) -> &str {
        let i = i as usize;
        let end = self.provider_ends.get(i).copied().unwrap_or(0) as usize;
        let start = match i {
            0 => 0,
            _ => self.provider_ends.get(i - 1).copied().unwrap_or(0) as usize,
        };
        self.provider_buf.get(start..end).unwrap_or("")
    }
    /// Number of distinct providers referenced.
    pub fn provider_count(&self) -> usize {
        self.provider_ends.len()
    }
    pub fn class_name(&self, i: u32) -> &str {
        self.classes.get(i as usize).map(|s| &**s).unwrap_or("")
    }
    pub fn trait_name(&self, i: u32) -> &str {
        self.traits.get(i as usize).map(|s| &**s).unwrap_or("")
    }
    pub fn suffix(&self, i: u32) -> &str {
        self.suffixes.get(i as usize).map(|s| &**s).unwrap_or("")
    }
}

/// One candidate: what to allocate from which provider.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllocationRequest {
    /// (provider, class, amount); entries of one provider are adjacent,
    /// providers in first-use order.
    pub resources: Vec<(u32, u32, i64)>,
    /// (group index into `suffixes`, provider) pairs, in group order.
    pub mappings: Vec<(u32, u32)>,
}

/// One provider of a tree involved in the candidates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProviderSummary {
    pub provider: u32,
    pub parent: Option<u32>,
    pub root: u32,
    /// (class, capacity, used) for every inventory of the provider.
    pub resources: Vec<(u32, i64, i64)>,
    /// Traits in upstream's order (standard traits first, then custom ones;
    /// within each, the order given to `Model::set_traits`).
    pub traits: Vec<u32>,
}

/// A single-group allocation request (internal).
#[derive(Clone, Debug)]
struct AReq {
    anchor: u32,
    /// (provider, class, amount)
    rrs: Vec<(u32, u32, i64)>,
    /// Providers satisfying the group (sorted).
    mapping: Vec<u32>,
}

/// Identity of a merged request (upstream's `AllocationRequest.__eq__`).
type DedupKey = (Vec<(u32, u32, i64)>, Vec<Vec<u32>>);

/// A merged allocation request (internal).
struct Merged {
    rrs: Vec<(u32, u32, i64)>,
    mappings: Vec<Vec<u32>>,
}

/// A (provider, anchor root, resource index) candidate of the multi-provider
/// path (upstream `RPCandidate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Cand {
    anchor: u32,
    rp: u32,
    ri: usize,
}

struct GroupCtx {
    use_same: bool,
    resources: Vec<(u32, i64)>,
    required: Vec<Vec<u32>>,
    forbidden: Vec<u32>,
    has_member_of: bool,
    rps_in_aggs: BitSet,
    has_forbidden_aggs: bool,
    forbidden_aggs: Vec<u32>,
    tree_root: Option<u32>,
    /// Per resource: providers with capacity, (rp, root), in id order.
    with_resource: Vec<Vec<(u32, u32)>>,
}

fn no_such_trait(name: &str) -> QueryError {
    QueryError::bad_request(format!("No such trait(s): {name}."))
}

fn no_such_rc(name: &str) -> QueryError {
    QueryError::bad_request(format!(
        "Invalid resource class in resources parameter: No such resource class {name}."
    ))
}

struct Search<'a> {
    m: &'a Model,
    /// Sharing providers. Upstream shares one mutable set between groups and
    /// narrows it in place by a group's member_of; reproduced.
    sharing: BitSet,
    anchor_roots: Option<BitSet>,
    has_trees: bool,
    shares_trait: Option<u32>,
}

impl Model {
    fn trait_ids(&self, names: &[String]) -> Result<Vec<u32>, QueryError> {
        names
            .iter()
            .map(|n| self.trait_id(n).ok_or_else(|| no_such_trait(n)))
            .collect()
    }

    /// Providers having, for every clause, one of its traits.
    fn providers_with_required(&self, required: &[Vec<u32>]) -> BitSet {
        let cap = self.slot_count();
        let mut acc: Option<BitSet> = None;
        for clause in required {
            let mut b = BitSet::new(cap);
            for t in clause {
                if let Some(list) = self.by_trait.get(*t as usize) {
                    for p in list {
                        b.insert(*p);
                    }
                }
            }
            match acc.as_mut() {
                Some(a) => a.intersect_with(&b),
                None => acc = Some(b),
            }
        }
        acc.unwrap_or_else(|| BitSet::new(cap))
    }

    fn providers_with_any_trait(&self, traits: &[u32]) -> BitSet {
        let mut b = BitSet::new(self.slot_count());
        for t in traits {
            if let Some(list) = self.by_trait.get(*t as usize) {
                for p in list {
                    b.insert(*p);
                }
            }
        }
        b
    }

    /// `provider_ids_matching_aggregates`: AND of ORs; unknown aggregates
    /// match nothing.
    fn providers_matching_aggs(&self, member_of: &[Vec<String>]) -> BitSet {
        let cap = self.slot_count();
        let mut acc: Option<BitSet> = None;
        for clause in member_of {
            let ids: Vec<u32> = clause.iter().filter_map(|a| self.agg_id(a)).collect();
            if ids.is_empty() {
                return BitSet::new(cap);
            }
            let b = self.providers_in_any_agg(&ids);
            match acc.as_mut() {
                Some(a) => a.intersect_with(&b),
                None => acc = Some(b),
            }
        }
        acc.unwrap_or_else(|| BitSet::new(cap))
    }

    /// `get_providers_with_resource`: (rp, root) with capacity for `amount`.
    fn providers_with_resource(
        &self,
        rc: u32,
        amount: i64,
        tree_root: Option<u32>,
    ) -> Vec<(u32, u32)> {
        let Some(list) = self.by_rc.get(rc as usize) else {
            return Vec::new();
        };
        list.iter()
            .filter(|x| tree_root.is_none_or(|t| x.root == t) && x.e.fits(amount))
            .map(|x| (x.rp, x.root))
            .collect()
    }

    fn is_ancestor_or_self(&self, anc: u32, mut x: u32) -> bool {
        let mut guard = 0;
        loop {
            if x == anc {
                return true;
            }
            guard += 1;
            match self.node(x).and_then(|n| n.parent) {
                Some(p) if guard <= self.slot_count() => x = p,
                _ => return false,
            }
        }
    }

    /// Whether all `rps` are in the subtree of one of them.
    fn same_subtree(&self, rps: &[u32]) -> bool {
        if rps.len() <= 1 {
            return true;
        }
        rps.iter()
            .any(|r| rps.iter().all(|o| self.is_ancestor_or_self(*r, *o)))
    }

    /// Searches allocation candidates (`GET /allocation_candidates`).
    ///
    /// Errors (400): an unknown resource class ("Invalid resource class in
    /// resources parameter: No such resource class X.") or trait ("No such
    /// trait(s): X."), detected in upstream's order, which means a group
    /// that matches nothing hides errors of later groups.
    pub fn allocation_candidates(&self, req: &CandidatesRequest) -> Result<Candidates, QueryError> {
        let mut requested_classes: Vec<String> = Vec::new();
        for g in &req.groups {
            for (rc, _) in &g.resources {
                if !requested_classes.contains(rc) {
                    requested_classes.push(rc.clone());
                }
            }
        }
        let empty = Candidates {
            requested_classes: requested_classes.clone(),
            ..Default::default()
        };
        let empty = || empty.clone();
        let shares_trait = self.traits.get(SHARES_TRAIT);
        let sharing = match shares_trait.and_then(|t| self.by_trait.get(t as usize)) {
            Some(list) => BitSet::from_ids(self.slot_count(), list.iter().copied()),
            None => BitSet::new(self.slot_count()),
        };
        let mut s = Search {
            m: self,
            sharing,
            anchor_roots: None,
            has_trees: self.has_trees(),
            shares_trait,
        };

        // root_required (anchor traits).
        if !req.root_required.is_empty() || !req.root_forbidden.is_empty() {
            let required = self.trait_ids(&req.root_required)?;
            let forbidden = self.trait_ids(&req.root_forbidden)?;
            let mut roots = BitSet::new(self.slot_count());
            for (id, n) in self.nodes() {
                if n.parent.is_none()
                    && n.rec.parent_uuid.is_none()
                    && required.iter().all(|t| n.has_trait(*t))
                    && !n.has_any_trait(&forbidden)
                {
                    roots.insert(id);
                }
            }
            if roots.is_empty() {
                return Ok(empty());
            }
            s.anchor_roots = Some(roots);
        }

        let mut per_group: Vec<Vec<AReq>> = Vec::with_capacity(req.groups.len());
        for g in &req.groups {
            let Some(gc) = s.group_ctx(g)? else {
                return Ok(empty());
            };
            let areqs = s.one_group(&gc);
            if areqs.is_empty() {
                return Ok(empty());
            }
            per_group.push(areqs);
        }
        Ok(s.finish(req, per_group, requested_classes))
    }

    /// Providers matching the filters of `GET /resource_providers`, in
    /// creation order. Errors (400): 'Invalid trait(s) in "required"
    /// parameter: No such trait(s): X.' and "Invalid resource class in
    /// resources parameter: No such resource class X.".
    pub fn providers_matching(
        &self,
        f: &ProvidersFilter,
    ) -> Result<Vec<&ProviderRecord>, QueryError> {
        let cap = self.slot_count();
        let mut keep = BitSet::from_ids(cap, self.nodes().map(|(id, _)| id));
        let filter = |keep: &mut BitSet, pred: &dyn Fn(u32) -> bool| {
            let ids: Vec<u32> = keep.iter().collect();
            for id in ids {
                if !pred(id) {
                    keep.remove(id);
                }
            }
        };
        if let Some(name) = f.name.as_deref().filter(|n| !n.is_empty()) {
            filter(&mut keep, &|id| {
                self.node(id).map(|n| n.rec.name == name).unwrap_or(false)
            });
        }
        if let Some(uuid) = f.uuid.as_deref().filter(|n| !n.is_empty()) {
            filter(&mut keep, &|id| {
                self.node(id).map(|n| n.rec.uuid == uuid).unwrap_or(false)
            });
        }
        if let Some(t) = f.in_tree.as_deref().filter(|n| !n.is_empty()) {
            let Some(root) = self.id_of(t).and_then(|id| self.node(id)).map(|n| n.root) else {
                return Ok(Vec::new());
            };
            filter(&mut keep, &|id| {
                self.node(id).map(|n| n.root == root).unwrap_or(false)
            });
        }
        let trait_err = |e: QueryError| {
            QueryError::bad_request(format!(
                "Invalid trait(s) in \"required\" parameter: {}",
                e.message
            ))
        };
        if !f.required_traits.is_empty() {
            let mut req = Vec::new();
            for clause in &f.required_traits {
                req.push(self.trait_ids(clause).map_err(trait_err)?);
            }
            let ok = self.providers_with_required(&req);
            if ok.is_empty() {
                return Ok(Vec::new());
            }
            keep.intersect_with(&ok);
        }
        if !f.forbidden_traits.is_empty() {
            let ids = self.trait_ids(&f.forbidden_traits).map_err(trait_err)?;
            keep.subtract(&self.providers_with_any_trait(&ids));
        }
        if !f.member_of.is_empty() {
            let ok = self.providers_matching_aggs(&f.member_of);
            if ok.is_empty() {
                return Ok(Vec::new());
            }
            keep.intersect_with(&ok);
        }
        if !f.forbidden_aggs.is_empty() {
            let ids: Vec<u32> = f
                .forbidden_aggs
                .iter()
                .filter_map(|a| self.agg_id(a))
                .collect();
            keep.subtract(&self.providers_in_any_agg(&ids));
        }
        for (name, amount) in &f.resources {
            let rc = self.rc_id(name).ok_or_else(|| no_such_rc(name))?;
            let ok = BitSet::from_ids(
                cap,
                self.providers_with_resource(rc, *amount, None)
                    .into_iter()
                    .map(|p| p.0),
            );
            keep.intersect_with(&ok);
        }
        let mut nodes: Vec<_> = keep.iter().filter_map(|id| self.node(id)).collect();
        nodes.sort_by_key(|n| n.seq);
        Ok(nodes.into_iter().map(|n| &n.rec).collect())
    }
}

impl Search<'_> {
    fn in_anchors(&self, root: u32) -> bool {
        self.anchor_roots
            .as_ref()
            .map(|a| a.contains(root))
            .unwrap_or(true)
    }

    /// `RequestGroupSearchContext.__init__`: lookups in upstream's order;
    /// `Ok(None)` when the group cannot match anything.
    fn group_ctx(&self, g: &RequestGroup) -> Result<Option<GroupCtx>, QueryError> {
        let m = self.m;
        let mut resources = Vec::with_capacity(g.resources.len());
        for (name, amount) in &g.resources {
            resources.push((m.rc_id(name).ok_or_else(|| no_such_rc(name))?, *amount));
        }
        let has_member_of = !g.member_of.is_empty();
        let rps_in_aggs = if has_member_of {
            let b = m.providers_matching_aggs(&g.member_of);
            if b.is_empty() {
                return Ok(None);
            }
            b
        } else {
            BitSet::new(0)
        };
        let mut required = Vec::with_capacity(g.required_traits.len());
        for clause in &g.required_traits {
            required.push(m.trait_ids(clause)?);
        }
        let forbidden = m.trait_ids(&g.forbidden_traits)?;
        let mut tree_root = None;
        if let Some(t) = &g.in_tree {
            match m.id_of(t).and_then(|id| m.node(id)) {
                Some(n) => tree_root = Some(n.root),
                None => return Ok(None),
            }
        }
        let mut with_resource = Vec::with_capacity(resources.len());
        for (rc, amount) in &resources {
            let v = m.providers_with_resource(*rc, *amount, tree_root);
            if v.is_empty() {
                return Ok(None);
            }
            with_resource.push(v);
        }
        Ok(Some(GroupCtx {
            use_same: g.use_same_provider(),
            resources,
            required,
            forbidden,
            has_member_of,
            rps_in_aggs,
            has_forbidden_aggs: !g.forbidden_aggs.is_empty(),
            forbidden_aggs: g
                .forbidden_aggs
                .iter()
                .filter_map(|a| m.agg_id(a))
                .collect(),
            tree_root,
            with_resource,
        }))
    }

    /// `_get_by_one_request`.
    fn one_group(&mut self, gc: &GroupCtx) -> Vec<AReq> {
        if !gc.use_same && (!self.sharing.is_empty() || self.has_trees) {
            if !gc.required.is_empty() {
                let flat: Vec<u32> = gc.required.iter().flatten().copied().collect();
                if self.m.providers_with_any_trait(&flat).is_empty() {
                    return Vec::new();
                }
            }
            let cands = self.trees_matching_all(gc);
            return self.multiple_providers(gc, cands);
        }
        let tuples = self.provider_ids_matching(gc);
        self.single_provider(gc, tuples)
    }

    /// `get_provider_ids_matching`: providers that alone satisfy the group.
    fn provider_ids_matching(&self, gc: &GroupCtx) -> Vec<(u32, u32)> {
        let m = self.m;
        let cap = m.slot_count();
        let mut filtered: Option<BitSet> = None;
        if !gc.required.is_empty() {
            let b = m.providers_with_required(&gc.required);
            if b.is_empty() {
                return Vec::new();
            }
            filtered = Some(b);
        }
        if gc.has_member_of {
            let b = match filtered.take() {
                Some(mut f) => {
                    f.intersect_with(&gc.rps_in_aggs);
                    f
                }
                None => gc.rps_in_aggs.clone(),
            };
            if b.is_empty() {
                return Vec::new();
            }
            filtered = Some(b);
        }
        let mut forbidden = BitSet::new(cap);
        if gc.has_forbidden_aggs {
            let bad = m.providers_in_any_agg(&gc.forbidden_aggs);
            for p in bad.iter() {
                forbidden.insert(p);
            }
            if let Some(f) = filtered.as_mut() {
                f.subtract(&bad);
                if f.is_empty() {
                    return Vec::new();
                }
            }
        }
        if !gc.forbidden.is_empty() {
            let bad = m.providers_with_any_trait(&gc.forbidden);
            for p in bad.iter() {
                forbidden.insert(p);
            }
            if let Some(f) = filtered.as_mut() {
                f.subtract(&bad);
                if f.is_empty() {
                    return Vec::new();
                }
            }
        }
        if gc.resources.is_empty() {
            // Upstream keeps only providers in the (possibly empty) filter set.
            let Some(f) = filtered else {
                return Vec::new();
            };
            return f
                .iter()
                .filter(|p| !forbidden.contains(*p))
                .filter_map(|p| m.node(p).map(|n| (p, n.root)))
                .collect();
        }
        let mut acc: Option<BitSet> = None;
        for (i, list) in gc.with_resource.iter().enumerate() {
            let ids = BitSet::from_ids(cap, list.iter().map(|p| p.0));
            let next = if i == 0 {
                match filtered.take() {
                    Some(mut f) => {
                        f.intersect_with(&ids);
                        f
                    }
                    None => {
                        let mut f = ids;
                        f.subtract(&forbidden);
                        f
                    }
                }
            } else {
                let mut f = acc.take().unwrap_or_default();
                f.intersect_with(&ids);
                f
            };
            if next.is_empty() {
                return Vec::new();
            }
            acc = Some(next);
        }
        let Some(f) = acc else { return Vec::new() };
        gc.with_resource
            .last()
            .map(|l| l.iter().copied().filter(|(p, _)| f.contains(*p)).collect())
            .unwrap_or_default()
    }

    /// `_alloc_candidates_single_provider`.
    fn single_provider(&self, gc: &GroupCtx, tuples: Vec<(u32, u32)>) -> Vec<AReq> {
        let mut out = Vec::with_capacity(tuples.len());
        for (rp, root) in tuples {
            let areq = AReq {
                anchor: root,
                rrs: gc
                    .resources
                    .iter()
                    .map(|(rc, amt)| (rp, *rc, *amt))
                    .collect(),
                mapping: vec![rp],
            };
            let sharing = match (self.shares_trait, self.m.node(rp)) {
                (Some(t), Some(n)) => n.has_trait(t),
                _ => false,
            };
            if sharing {
                let anchors = self.m.sharing_anchors(rp);
                if self.in_anchors(root) {
                    out.push(areq.clone());
                }
                for a in anchors {
                    if a == root || !self.in_anchors(a) {
                        continue;
                    }
                    let mut c = areq.clone();
                    c.anchor = a;
                    out.push(c);
                }
            } else if self.in_anchors(root) {
                out.push(areq);
            }
        }
        out
    }

    /// `get_trees_matching_all`.
    fn trees_matching_all(&mut self, gc: &GroupCtx) -> Vec<Cand> {
        let m = self.m;
        let bad_aggs = gc
            .has_forbidden_aggs
            .then(|| m.providers_in_any_agg(&gc.forbidden_aggs));
        let mut all: Vec<Cand> = Vec::new();
        for (ri, list) in gc.with_resource.iter().enumerate() {
            let mut c: Vec<Cand> = list
                .iter()
                .map(|(rp, root)| Cand {
                    anchor: *root,
                    rp: *rp,
                    ri,
                })
                .collect();
            if c.is_empty() {
                return Vec::new();
            }
            // get_rps_with_shared_capacity (narrows the shared set in place).
            if gc.has_member_of {
                self.sharing.intersect_with(&gc.rps_in_aggs);
            }
            if !self.sharing.is_empty() && gc.tree_root.is_none() {
                let sharing_with_cap: Vec<u32> = list
                    .iter()
                    .map(|p| p.0)
                    .filter(|p| self.sharing.contains(*p))
                    .collect();
                for sp in sharing_with_cap {
                    for anchor in m.sharing_anchors(sp) {
                        c.push(Cand { anchor, rp: sp, ri });
                    }
                }
                c.sort_unstable();
                c.dedup();
            }
            if let Some(anchors) = &self.anchor_roots {
                c.retain(|x| anchors.contains(x.anchor));
                if c.is_empty() {
                    return Vec::new();
                }
            }
            if gc.has_member_of {
                c.retain(|x| gc.rps_in_aggs.contains(x.rp) || gc.rps_in_aggs.contains(x.anchor));
                if c.is_empty() {
                    return Vec::new();
                }
            }
            if let Some(bad) = &bad_aggs {
                c.retain(|x| !bad.contains(x.rp) && !bad.contains(x.anchor));
                if c.is_empty() {
                    return Vec::new();
                }
            }
            // merge_common_trees
            if all.is_empty() {
                all = c;
            } else {
                let cap = m.slot_count();
                let t1 = BitSet::from_ids(cap, all.iter().map(|x| x.anchor));
                let mut both = BitSet::from_ids(cap, c.iter().map(|x| x.anchor));
                both.intersect_with(&t1);
                all.extend(c);
                all.retain(|x| both.contains(x.anchor));
            }
            if all.is_empty() {
                return Vec::new();
            }
        }
        if (gc.required.is_empty() && gc.forbidden.is_empty()) || !self.sharing.is_empty() {
            return all;
        }
        // _get_trees_with_traits, then filter_by_rp on (rp, actual root).
        let cap = m.slot_count();
        let rps = BitSet::from_ids(cap, all.iter().map(|x| x.rp));
        let mut good_roots = BitSet::new(cap);
        let mut clause_roots: Vec<BitSet> = vec![BitSet::new(cap); gc.required.len()];
        for rp in rps.iter() {
            let Some(n) = m.node(rp) else { continue };
            if n.has_any_trait(&gc.forbidden) {
                continue;
            }
            good_roots.insert(n.root);
            for (k, clause) in gc.required.iter().enumerate() {
                if n.has_any_trait(clause) {
                    clause_roots[k].insert(n.root);
                }
            }
        }
        let mut ok_roots = good_roots;
        for c in &clause_roots {
            ok_roots.intersect_with(c);
        }
        all.retain(|x| {
            m.node(x.rp)
                .map(|n| n.root == x.anchor && ok_roots.contains(n.root))
                .unwrap_or(false)
        });
        all
    }

    /// `_alloc_candidates_multiple_providers`.
    fn multiple_providers(&self, gc: &GroupCtx, mut cands: Vec<Cand>) -> Vec<AReq> {
        if cands.is_empty() {
            return Vec::new();
        }
        cands.sort_unstable();
        cands.dedup();
        let m = self.m;
        let nres = gc.resources.len();
        let mut out = Vec::new();
        let mut i = 0;
        while i < cands.len() {
            let anchor = cands[i].anchor;
            let mut lists: Vec<Vec<u32>> = vec![Vec::new(); nres];
            while i < cands.len() && cands[i].anchor == anchor {
                if let Some(l) = lists.get_mut(cands[i].ri) {
                    l.push(cands[i].rp);
                }
                i += 1;
            }
            if lists.iter().any(|l| l.is_empty()) {
                continue;
            }
            let mut idx = vec![0usize; nres];
            'combos: loop {
                let combo: Vec<u32> = (0..nres).map(|k| lists[k][idx[k]]).collect();
                let ok = {
                    let nodes: Vec<_> = combo.iter().filter_map(|p| m.node(*p)).collect();
                    !nodes.iter().any(|n| n.has_any_trait(&gc.forbidden))
                        && gc
                            .required
                            .iter()
                            .all(|clause| nodes.iter().any(|n| n.has_any_trait(clause)))
                };
                if ok {
                    let rrs = combo
                        .iter()
                        .zip(gc.resources.iter())
                        .map(|(rp, (rc, amt))| (*rp, *rc, *amt))
                        .collect();
                    let mut mapping = combo.clone();
                    mapping.sort_unstable();
                    mapping.dedup();
                    out.push(AReq {
                        anchor,
                        rrs,
                        mapping,
                    });
                }
                // advance the odometer
                let mut k = nres;
                loop {
                    if k == 0 {
                        break 'combos;
                    }
                    k -= 1;
                    idx[k] += 1;
                    if idx[k] < lists[k].len() {
                        break;
                    }
                    idx[k] = 0;
                }
            }
        }
        out
    }

    /// `_merge_candidates`, `exclude_nested_providers`, `limit_results` and
    /// the conversion to output form.
    fn finish(
        &self,
        req: &CandidatesRequest,
        per_group: Vec<Vec<AReq>>,
        requested_classes: Vec<String>,
    ) -> Candidates {
        let m = self.m;
        let ngroups = per_group.len();
        let root_of = |p: u32| m.node(p).map(|n| n.root).unwrap_or(p);
        // Group the requests by anchor, anchors in order of first appearance.
        let mut anchor_order: Vec<u32> = vec![u32::MAX; m.slot_count()];
        let mut next_order = 0u32;
        let mut entries: Vec<(u32, u32, u32)> = Vec::new(); // (order, group, index)
                                                            // Duplicates after consolidation are only possible when a request is
                                                            // anchored outside the tree of one of its providers (sharing).
        let mut needs_dedup = false;
        for (g, areqs) in per_group.iter().enumerate() {
            for (i, a) in areqs.iter().enumerate() {
                let slot = &mut anchor_order[a.anchor as usize];
                if *slot == u32::MAX {
                    *slot = next_order;
                    next_order += 1;
                }
                entries.push((*slot, g as u32, i as u32));
                if !needs_dedup && a.mapping.iter().any(|p| root_of(*p) != a.anchor) {
                    needs_dedup = true;
                }
            }
        }
        entries.sort_unstable();
        let granular: Vec<bool> = req.groups.iter().map(|g| g.use_same_provider()).collect();
        let num_granular = granular.iter().filter(|x| **x).count();
        let isolate = req.isolate();
        let subtree_groups: Vec<Vec<usize>> = req
            .same_subtrees
            .iter()
            .map(|ss| {
                req.groups
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| ss.contains(&g.suffix))
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();

        let mut merged: Vec<Merged> = Vec::new();
        let mut seen: HashSet<DedupKey> = HashSet::new();
        let mut lists: Vec<Vec<&AReq>> = vec![Vec::new(); ngroups];
        let mut e = 0;
        while e < entries.len() {
            let order = entries[e].0;
            for l in lists.iter_mut() {
                l.clear();
            }
            while e < entries.len() && entries[e].0 == order {
                let (_, g, i) = entries[e];
                if let Some(a) = per_group.get(g as usize).and_then(|v| v.get(i as usize)) {
                    lists[g as usize].push(a);
                }
                e += 1;
            }
            if lists.iter().any(|l| l.is_empty()) {
                continue;
            }
            let mut idx = vec![0usize; ngroups];
            let mut combo: Vec<&AReq> = Vec::with_capacity(ngroups);
            'combos: loop {
                combo.clear();
                combo.extend((0..ngroups).map(|g| lists[g][idx[g]]));
                if self.combo_ok(&combo, isolate, &granular, num_granular, &subtree_groups) {
                    if let Some(mg) = self.consolidate(&combo) {
                        if needs_dedup {
                            let mut key_rrs = mg.rrs.clone();
                            key_rrs.sort_unstable();
                            if seen.insert((key_rrs, mg.mappings.clone())) {
                                merged.push(mg);
                            }
                        } else {
                            merged.push(mg);
                        }
                    }
                }
                let mut g = ngroups;
                loop {
                    if g == 0 {
                        break 'combos;
                    }
                    g -= 1;
                    idx[g] += 1;
                    if idx[g] < lists[g].len() {
                        break;
                    }
                    idx[g] = 0;
                }
            }
        }
        if merged.is_empty() {
            return Candidates {
                requested_classes,
                ..Default::default()
            };
        }

        // Trees of every provider in the merged requests (upstream's summaries).
        let mut tree_order: Vec<u32> = Vec::new();
        let mut tree_seen = BitSet::new(m.slot_count());
        for mg in &merged {
            for (rp, _, _) in &mg.rrs {
                let r = root_of(*rp);
                if !tree_seen.contains(r) {
                    tree_seen.insert(r);
                    tree_order.push(r);
                }
            }
        }
        let mut summary_ids: Vec<u32> = Vec::new();
        let mut stack = Vec::new();
        for r in &tree_order {
            m.tree_members_into(*r, &mut summary_ids, &mut stack);
        }

        // Before 1.29: drop requests using two providers of one tree.
        if !req.nested_aware() && self.has_trees {
            let mut used = BitSet::new(m.slot_count());
            merged.retain(|mg| {
                let mut rps: Vec<u32> = mg.rrs.iter().map(|x| x.0).collect();
                rps.sort_unstable();
                rps.dedup();
                let mut roots: Vec<u32> = rps.iter().map(|p| root_of(*p)).collect();
                roots.sort_unstable();
                roots.dedup();
                let keep = roots.len() == rps.len();
                if keep {
                    for p in rps {
                        used.insert(p);
                    }
                }
                keep
            });
            summary_ids.retain(|p| used.contains(*p));
        }

        if req.randomize {
            use rand::seq::SliceRandom;
            merged.shuffle(&mut rand::thread_rng());
        }
        if let Some(limit) = req.limit {
            if limit < merged.len() {
                merged.truncate(limit);
                let mut roots = BitSet::new(m.slot_count());
                for mg in &merged {
                    for (rp, _, _) in &mg.rrs {
                        roots.insert(root_of(*rp));
                    }
                }
                summary_ids.retain(|p| roots.contains(root_of(*p)));
            }
        }

        // Output: providers get local indexes into `Candidates::providers`.
        let mut local: Vec<u32> = vec![u32::MAX; m.slot_count()];
        let mut provider_buf = String::with_capacity(summary_ids.len() * 36 + 64);
        let mut provider_ends: Vec<u32> = Vec::with_capacity(summary_ids.len());
        let mut escape = false;
        let mut local_of = |p: u32| -> u32 {
            let slot = &mut local[p as usize];
            if *slot == u32::MAX {
                *slot = provider_ends.len() as u32;
                if let Some(n) = m.node(p) {
                    provider_buf.push_str(&n.uuid);
                    escape |= crate::render::needs_escape(&n.uuid);
                }
                provider_ends.push(provider_buf.len() as u32);
            }
            *slot
        };
        let mut allocation_requests = Vec::with_capacity(merged.len());
        for mg in &merged {
            let mut resources: Vec<(u32, u32, i64)> = Vec::with_capacity(mg.rrs.len());
            // grouped by provider, providers in first-use order
            for (k, (rp, _, _)) in mg.rrs.iter().enumerate() {
                if mg.rrs[..k].iter().any(|x| x.0 == *rp) {
                    continue;
                }
                let lp = local_of(*rp);
                for (rp2, rc, amt) in &mg.rrs[k..] {
                    if rp2 == rp {
                        resources.push((lp, *rc, *amt));
                    }
                }
            }
            let mut mappings: Vec<(u32, u32)> = Vec::new();
            for (g, ps) in mg.mappings.iter().enumerate() {
                for p in ps {
                    mappings.push((g as u32, local_of(*p)));
                }
            }
            allocation_requests.push(AllocationRequest {
                resources,
                mappings,
            });
        }
        let mut provider_summaries = Vec::with_capacity(summary_ids.len());
        for p in &summary_ids {
            let Some(n) = m.node(*p) else { continue };
            let provider = local_of(*p);
            let parent = n.parent.map(&mut local_of);
            let root = local_of(n.root);
            let mut traits: Vec<u32> = n.traits.clone();
            traits.sort_unstable_by(|a, b| m.trait_order_key(*a).cmp(&m.trait_order_key(*b)));
            provider_summaries.push(ProviderSummary {
                provider,
                parent,
                root,
                resources: n.inv.iter().map(|e| (e.rc, e.capacity(), e.used)).collect(),
                traits,
            });
        }
        let requested: Vec<u32> = requested_classes
            .iter()
            .filter_map(|c| m.rcs.get(c))
            .collect();
        Candidates {
            allocation_requests,
            provider_summaries,
            requested_classes,
            requested,
            provider_buf,
            provider_ends,
            providers_need_escape: escape,
            classes: m.rcs.all(),
            traits: m.traits.all(),
            suffixes: req
                .groups
                .iter()
                .map(|g| Arc::from(g.suffix.as_str()))
                .collect(),
        }
    }

    fn combo_ok(
        &self,
        combo: &[&AReq],
        isolate: bool,
        granular: &[bool],
        num_granular: usize,
        subtree_groups: &[Vec<usize>],
    ) -> bool {
        if isolate {
            let mut ps: Vec<u32> = combo
                .iter()
                .zip(granular.iter())
                .filter(|(_, g)| **g)
                .flat_map(|(a, _)| a.mapping.iter().copied())
                .collect();
            ps.sort_unstable();
            ps.dedup();
            if ps.len() != num_granular {
                return false;
            }
        }
        for groups in subtree_groups {
            let mut rps: Vec<u32> = groups
                .iter()
                .flat_map(|g| combo[*g].mapping.iter().copied())
                .collect();
            rps.sort_unstable();
            rps.dedup();
            if !self.m.same_subtree(&rps) {
                return false;
            }
        }
        true
    }

    /// `_consolidate_allocation_requests` + the final capacity check.
    fn consolidate(&self, combo: &[&AReq]) -> Option<Merged> {
        let mut rrs: Vec<(u32, u32, i64)> = Vec::new();
        for a in combo {
            for (rp, rc, amt) in &a.rrs {
                match rrs.iter_mut().find(|x| x.0 == *rp && x.1 == *rc) {
                    Some(x) => x.2 += amt,
                    None => rrs.push((*rp, *rc, *amt)),
                }
            }
        }
        for (rp, rc, amt) in &rrs {
            let e = self.m.node(*rp).and_then(|n| n.inv_for(*rc))?;
            if e.used + amt > e.capacity() || *amt > e.inv.max_unit {
                return None;
            }
        }
        Some(Merged {
            rrs,
            mappings: combo.iter().map(|a| a.mapping.clone()).collect(),
        })
    }
}
