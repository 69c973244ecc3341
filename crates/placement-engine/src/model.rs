//! The in-memory model of placement's provider state.
//!
//! Providers live in a slot arena (`Vec<Option<Node>>`) addressed by small
//! integer ids; resource classes, traits and aggregates are interned to `u32`
//! ids. Secondary indexes (providers by resource class, by trait, by
//! aggregate) are sorted `Vec<u32>`s updated per provider, so that a single
//! provider update never rebuilds the model.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::bitset::BitSet;

/// One inventory record of a provider.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Inventory {
    pub total: i64,
    pub reserved: i64,
    pub min_unit: i64,
    pub max_unit: i64,
    pub step_size: i64,
    pub allocation_ratio: f64,
}

impl Default for Inventory {
    fn default() -> Self {
        Inventory {
            total: 0,
            reserved: 0,
            min_unit: 1,
            max_unit: i64::MAX,
            step_size: 1,
            allocation_ratio: 1.0,
        }
    }
}

/// Everything the engine needs to know about one provider. `root_uuid` is
/// recomputed by the model from the parent links (the value passed in is used
/// only while the parent is not loaded yet); read it back with
/// [`Model::provider`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProviderRecord {
    pub uuid: String,
    pub name: String,
    pub generation: i64,
    pub parent_uuid: Option<String>,
    pub root_uuid: String,
    /// Inventories keyed by resource class name.
    pub inventories: BTreeMap<String, Inventory>,
    /// Sum of allocations keyed by resource class name.
    pub usages: BTreeMap<String, i64>,
    pub traits: BTreeSet<String>,
    pub aggregates: BTreeSet<String>,
}

#[derive(Default, Debug, Clone)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(Arc::from(s));
        self.ids.insert(s.to_string(), id);
        id
    }
    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
    pub(crate) fn str(&self, id: u32) -> &str {
        self.names.get(id as usize).map(|s| &**s).unwrap_or("")
    }
    pub(crate) fn all(&self) -> Vec<Arc<str>> {
        self.names.clone()
    }
}

/// One inventory with its usage, interned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InvEntry {
    pub(crate) rc: u32,
    pub(crate) inv: Inventory,
    pub(crate) used: i64,
}

impl InvEntry {
    /// Upstream's SQL capacity filter for a single request of `amount`.
    pub(crate) fn fits(&self, amount: i64) -> bool {
        let i = &self.inv;
        if i.step_size == 0 {
            return false;
        }
        ((self.used + amount) as f64) <= ((i.total - i.reserved) as f64) * i.allocation_ratio
            && i.min_unit <= amount
            && i.max_unit >= amount
            && amount % i.step_size == 0
    }
    /// Capacity as upstream's provider summaries compute it (truncated).
    pub(crate) fn capacity(&self) -> i64 {
        (((self.inv.total - self.inv.reserved) as f64) * self.inv.allocation_ratio) as i64
    }
}

/// A provider's inventory of one class as the per-class index keeps it
/// (scanned sequentially by searches).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RcEntry {
    pub(crate) rp: u32,
    pub(crate) root: u32,
    pub(crate) e: InvEntry,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) rec: ProviderRecord,
    pub(crate) uuid: Arc<str>,
    pub(crate) seq: u64,
    pub(crate) parent: Option<u32>,
    pub(crate) root: u32,
    pub(crate) children: Vec<u32>,
    /// Sorted by resource class id.
    pub(crate) inv: Vec<InvEntry>,
    /// Sorted trait ids.
    pub(crate) traits: Vec<u32>,
    /// Sorted aggregate ids.
    pub(crate) aggs: Vec<u32>,
}

impl Node {
    pub(crate) fn inv_for(&self, rc: u32) -> Option<&InvEntry> {
        self.inv
            .binary_search_by_key(&rc, |e| e.rc)
            .ok()
            .and_then(|i| self.inv.get(i))
    }
    pub(crate) fn has_trait(&self, t: u32) -> bool {
        self.traits.binary_search(&t).is_ok()
    }
    pub(crate) fn has_any_trait(&self, ts: &[u32]) -> bool {
        ts.iter().any(|t| self.has_trait(*t))
    }
}

/// The provider state. Cheap single-provider updates; searches take `&self`.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub(crate) slots: Vec<Option<Node>>,
    free: Vec<u32>,
    by_uuid: HashMap<String, u32>,
    next_seq: u64,
    pub(crate) rcs: Interner,
    pub(crate) traits: Interner,
    pub(crate) aggs: Interner,
    /// Resource classes / traits that exist (indexed by interned id).
    known_rcs: Vec<bool>,
    known_traits: Vec<bool>,
    /// Order of traits as given to `set_traits`/`add_trait` (upstream lists
    /// a provider's traits in trait-id order: standard traits first, then
    /// custom ones by creation).
    trait_rank: Vec<u32>,
    next_trait_rank: u32,
    /// Sorted provider ids having inventory of a class / a trait / in an agg.
    /// Per class: (provider, root, inventory+usage), sorted by provider.
    pub(crate) by_rc: Vec<Vec<RcEntry>>,
    pub(crate) by_trait: Vec<Vec<u32>>,
    pub(crate) by_agg: Vec<Vec<u32>>,
    /// Children whose parent is not loaded yet, by parent uuid.
    pending: HashMap<String, Vec<u32>>,
    /// Number of providers that have a parent.
    nested: usize,
}

fn sorted_insert(v: &mut Vec<u32>, x: u32) {
    if let Err(pos) = v.binary_search(&x) {
        v.insert(pos, x);
    }
}

fn sorted_remove(v: &mut Vec<u32>, x: u32) {
    if let Ok(pos) = v.binary_search(&x) {
        v.remove(pos);
    }
}

fn index_at(v: &mut Vec<Vec<u32>>, id: u32) -> &mut Vec<u32> {
    let i = id as usize;
    if v.len() <= i {
        v.resize_with(i + 1, Vec::new);
    }
    &mut v[i]
}

pub(crate) const SHARES_TRAIT: &str = "MISC_SHARES_VIA_AGGREGATE";

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of providers.
    pub fn len(&self) -> usize {
        self.by_uuid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uuid.is_empty()
    }

    /// Declares every resource class that exists (standard and custom).
    pub fn set_resource_classes<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.known_rcs.clear();
        for n in names {
            let id = self.rcs.intern(n.as_ref()) as usize;
            if self.known_rcs.len() <= id {
                self.known_rcs.resize(id + 1, false);
            }
            self.known_rcs[id] = true;
        }
    }

    /// Declares every trait that exists (standard and custom).
    pub fn set_traits<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.known_traits.clear();
        self.trait_rank.clear();
        self.next_trait_rank = 0;
        for n in names {
            self.add_trait(n.as_ref());
        }
    }

    /// Adds one resource class to the set of existing classes.
    pub fn add_resource_class(&mut self, name: &str) {
        let id = self.rcs.intern(name) as usize;
        if self.known_rcs.len() <= id {
            self.known_rcs.resize(id + 1, false);
        }
        self.known_rcs[id] = true;
    }

    /// Adds one trait to the set of existing traits.
    pub fn add_trait(&mut self, name: &str) {
        let id = self.traits.intern(name) as usize;
        if self.known_traits.len() <= id {
            self.known_traits.resize(id + 1, false);
        }
        self.known_traits[id] = true;
        if self.trait_rank.len() <= id {
            self.trait_rank.resize(id + 1, u32::MAX);
        }
        if self.trait_rank[id] == u32::MAX {
            self.trait_rank[id] = self.next_trait_rank;
            self.next_trait_rank += 1;
        }
    }

    /// Sort key of a trait in provider summaries: standard before custom,
    /// then the order the traits were declared in, then the name.
    pub(crate) fn trait_order_key(&self, id: u32) -> (bool, u32, &str) {
        let name = self.traits.str(id);
        (
            name.starts_with("CUSTOM_"),
            self.trait_rank
                .get(id as usize)
                .copied()
                .unwrap_or(u32::MAX),
            name,
        )
    }

    /// Removes a resource class / trait from the existing sets.
    pub fn remove_resource_class(&mut self, name: &str) {
        if let Some(id) = self.rcs.get(name) {
            if let Some(k) = self.known_rcs.get_mut(id as usize) {
                *k = false;
            }
        }
    }

    pub fn remove_trait(&mut self, name: &str) {
        if let Some(id) = self.traits.get(name) {
            if let Some(k) = self.known_traits.get_mut(id as usize) {
                *k = false;
            }
            if let Some(r) = self.trait_rank.get_mut(id as usize) {
                *r = u32::MAX;
            }
        }
    }

    /// Interned id of an existing resource class.
    pub(crate) fn rc_id(&self, name: &str) -> Option<u32> {
        self.rcs
            .get(name)
            .filter(|id| self.known_rcs.get(*id as usize).copied().unwrap_or(false))
    }

    /// Interned id of an existing trait.
    pub(crate) fn trait_id(&self, name: &str) -> Option<u32> {
        self.traits.get(name).filter(|id| {
            self.known_traits
                .get(*id as usize)
                .copied()
                .unwrap_or(false)
        })
    }

    pub(crate) fn agg_id(&self, name: &str) -> Option<u32> {
        self.aggs.get(name)
    }

    pub(crate) fn node(&self, id: u32) -> Option<&Node> {
        self.slots.get(id as usize).and_then(|s| s.as_ref())
    }

    pub(crate) fn id_of(&self, uuid: &str) -> Option<u32> {
        self.by_uuid.get(uuid).copied()
    }

    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn has_trees(&self) -> bool {
        self.nested > 0
    }

    /// Iterates (id, node) over all providers, in slot order.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = (u32, &Node)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|n| (i as u32, n)))
    }

    /// Read access to one provider (root_uuid reflects the current tree).
    pub fn provider(&self, uuid: &str) -> Option<&ProviderRecord> {
        self.id_of(uuid)
            .and_then(|id| self.node(id))
            .map(|n| &n.rec)
    }

    /// All providers, in creation order.
    pub fn providers(&self) -> Vec<&ProviderRecord> {
        let mut v: Vec<&Node> = self.nodes().map(|(_, n)| n).collect();
        v.sort_by_key(|n| n.seq);
        v.into_iter().map(|n| &n.rec).collect()
    }

    /// UUIDs of the direct children of a provider.
    pub fn children(&self, uuid: &str) -> Vec<&str> {
        let Some(n) = self.id_of(uuid).and_then(|id| self.node(id)) else {
            return Vec::new();
        };
        let mut c: Vec<&Node> = n.children.iter().filter_map(|c| self.node(*c)).collect();
        c.sort_by_key(|n| n.seq);
        c.into_iter().map(|n| n.rec.uuid.as_str()).collect()
    }

    /// Replaces every provider at once.
    pub fn replace_all<I: IntoIterator<Item = ProviderRecord>>(&mut self, records: I) {
        let rcs = std::mem::take(&mut self.rcs);
        let traits = std::mem::take(&mut self.traits);
        let known_rcs = std::mem::take(&mut self.known_rcs);
        let known_traits = std::mem::take(&mut self.known_traits);
        let trait_rank = std::mem::take(&mut self.trait_rank);
        let next_trait_rank = self.next_trait_rank;
        *self = Model {
            rcs,
            traits,
            known_rcs,
            known_traits,
            trait_rank,
            next_trait_rank,
            ..Model::default()
        };
        self.upsert_providers(records);
    }

    /// Inserts or replaces several providers (any order: children may come
    /// before their parents).
    pub fn upsert_providers<I: IntoIterator<Item = ProviderRecord>>(&mut self, records: I) {
        for r in records {
            self.upsert_provider(r);
        }
    }

    /// Removes `id` from the indexes. Class-index entries of classes that
    /// `keep` still has are left in place (overwritten by `index`), which
    /// keeps updates of providers in big classes cheap.
    fn unindex(&mut self, id: u32, keep: Option<&ProviderRecord>) {
        let Some(n) = self.node(id) else { return };
        let rcs: Vec<u32> = n
            .inv
            .iter()
            .map(|e| e.rc)
            .filter(|rc| keep.is_none_or(|k| !k.inventories.contains_key(self.rcs.str(*rc))))
            .collect();
        let traits = n.traits.clone();
        let aggs = n.aggs.clone();
        for rc in rcs {
            if let Some(list) = self.by_rc.get_mut(rc as usize) {
                if let Ok(pos) = list.binary_search_by_key(&id, |x| x.rp) {
                    list.remove(pos);
                }
            }
        }
        for t in traits {
            sorted_remove(index_at(&mut self.by_trait, t), id);
        }
        for a in aggs {
            sorted_remove(index_at(&mut self.by_agg, a), id);
        }
    }

    fn index(&mut self, id: u32) {
        let Some(n) = self.node(id) else { return };
        let root = n.root;
        let inv = n.inv.clone();
        let traits = n.traits.clone();
        let aggs = n.aggs.clone();
        for e in inv {
            let i = e.rc as usize;
            if self.by_rc.len() <= i {
                self.by_rc.resize_with(i + 1, Vec::new);
            }
            let list = &mut self.by_rc[i];
            let entry = RcEntry { rp: id, root, e };
            match list.binary_search_by_key(&id, |x| x.rp) {
                Ok(pos) => list[pos] = entry,
                Err(pos) => list.insert(pos, entry),
            }
        }
        for t in traits {
            sorted_insert(index_at(&mut self.by_trait, t), id);
        }
        for a in aggs {
            sorted_insert(index_at(&mut self.by_agg, a), id);
        }
    }

    /// Copies a node's root and inventories/usages into the class index.
    fn sync_rc(&mut self, id: u32) {
        let Some(Some(n)) = self.slots.get(id as usize) else {
            return;
        };
        for e in &n.inv {
            if let Some(list) = self.by_rc.get_mut(e.rc as usize) {
                if let Ok(pos) = list.binary_search_by_key(&id, |x| x.rp) {
                    list[pos].root = n.root;
                    list[pos].e = *e;
                }
            }
        }
    }

    /// Detaches `id` from its parent (or from the pending list).
    fn detach(&mut self, id: u32) {
        let (parent, parent_uuid) = match self.node(id) {
            Some(n) => (n.parent, n.rec.parent_uuid.clone()),
            None => return,
        };
        if let Some(p) = parent {
            if let Some(Some(pn)) = self.slots.get_mut(p as usize) {
                pn.children.retain(|c| *c != id);
            }
        } else if let Some(pu) = parent_uuid {
            if let Some(list) = self.pending.get_mut(&pu) {
                list.retain(|c| *c != id);
                if list.is_empty() {
                    self.pending.remove(&pu);
                }
            }
        }
        if let Some(Some(n)) = self.slots.get_mut(id as usize) {
            if n.rec.parent_uuid.is_some() {
                self.nested -= 1;
            }
            n.parent = None;
        }
    }

    /// Inserts or replaces one provider.
    pub fn upsert_provider(&mut self, rec: ProviderRecord) {
        let existing = self.id_of(&rec.uuid);
        let (id, seq, children) = match existing {
            Some(id) => {
                self.unindex(id, Some(&rec));
                self.detach(id);
                let (seq, children) = match self.node(id) {
                    Some(n) => (n.seq, n.children.clone()),
                    None => (0, Vec::new()),
                };
                (id, seq, children)
            }
            None => {
                let id = match self.free.pop() {
                    Some(id) => id,
                    None => {
                        self.slots.push(None);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.by_uuid.insert(rec.uuid.clone(), id);
                let seq = self.next_seq;
                self.next_seq += 1;
                let children = self.pending.remove(&rec.uuid).unwrap_or_default();
                (id, seq, children)
            }
        };
        let mut inv: Vec<InvEntry> = rec
            .inventories
            .iter()
            .map(|(name, i)| {
                let rc = self.rcs.intern(name);
                InvEntry {
                    rc,
                    inv: *i,
                    used: rec.usages.get(name).copied().unwrap_or(0),
                }
            })
            .collect();
        inv.sort_by_key(|e| e.rc);
        let mut traits: Vec<u32> = rec.traits.iter().map(|t| self.traits.intern(t)).collect();
        traits.sort_unstable();
        let mut aggs: Vec<u32> = rec.aggregates.iter().map(|a| self.aggs.intern(a)).collect();
        aggs.sort_unstable();

        // Parent link.
        let mut parent = None;
        if let Some(pu) = &rec.parent_uuid {
            self.nested += 1;
            match self.id_of(pu) {
                Some(p) if p != id => {
                    parent = Some(p);
                    if let Some(Some(pn)) = self.slots.get_mut(p as usize) {
                        pn.children.push(id);
                    }
                }
                _ => self.pending.entry(pu.clone()).or_default().push(id),
            }
        }
        let provisional_root = match parent {
            Some(p) => self.node(p).map(|n| n.root).unwrap_or(id),
            None => match rec.parent_uuid {
                Some(_) => self.id_of(&rec.root_uuid).unwrap_or(id),
                None => id,
            },
        };
        for c in &children {
            if let Some(Some(cn)) = self.slots.get_mut(*c as usize) {
                cn.parent = Some(id);
            }
        }
        let uuid: Arc<str> = Arc::from(rec.uuid.as_str());
        self.slots[id as usize] = Some(Node {
            rec,
            uuid,
            seq,
            parent,
            root: provisional_root,
            children,
            inv,
            traits,
            aggs,
        });
        self.index(id);
        self.set_subtree_root(id, provisional_root);
    }

    /// Sets `root` on `id` and its whole subtree (iteratively).
    fn set_subtree_root(&mut self, id: u32, root: u32) {
        let root_uuid = match self.node(root) {
            Some(n) => n.rec.uuid.clone(),
            None => return,
        };
        let mut stack = vec![id];
        let mut guard = 0usize;
        while let Some(x) = stack.pop() {
            guard += 1;
            if guard > self.slots.len() + 1 {
                break; // a loop; never expected
            }
            if let Some(Some(n)) = self.slots.get_mut(x as usize) {
                let changed = n.root != root;
                n.root = root;
                if n.rec.root_uuid != root_uuid {
                    n.rec.root_uuid.clone_from(&root_uuid);
                }
                stack.extend(n.children.iter().copied());
                if changed {
                    self.sync_rc(x);
                }
            }
        }
    }

    /// Removes one provider. Children (upstream forbids deleting a parent)
    /// become pending until a provider with this uuid reappears.
    pub fn remove_provider(&mut self, uuid: &str) -> bool {
        let Some(id) = self.id_of(uuid) else {
            return false;
        };
        self.unindex(id, None);
        self.detach(id);
        let children = self
            .node(id)
            .map(|n| n.children.clone())
            .unwrap_or_default();
        for c in &children {
            if let Some(Some(cn)) = self.slots.get_mut(*c as usize) {
                cn.parent = None;
            }
            self.set_subtree_root(*c, *c);
        }
        if !children.is_empty() {
            self.pending.insert(uuid.to_string(), children);
        }
        self.slots[id as usize] = None;
        self.by_uuid.remove(uuid);
        self.free.push(id);
        true
    }

    /// Replaces the usages (sums of allocations by class) of one provider.
    pub fn set_usages<I, S>(&mut self, uuid: &str, usages: I) -> bool
    where
        I: IntoIterator<Item = (S, i64)>,
        S: AsRef<str>,
    {
        let Some(id) = self.id_of(uuid) else {
            return false;
        };
        let mut map = BTreeMap::new();
        for (k, v) in usages {
            map.insert(k.as_ref().to_string(), v);
        }
        let ids: Vec<(Option<u32>, i64)> = map.iter().map(|(k, v)| (self.rcs.get(k), *v)).collect();
        if let Some(Some(n)) = self.slots.get_mut(id as usize) {
            for e in n.inv.iter_mut() {
                e.used = 0;
            }
            for (rc, used) in ids {
                if let Some(rc) = rc {
                    if let Ok(i) = n.inv.binary_search_by_key(&rc, |e| e.rc) {
                        n.inv[i].used = used;
                    }
                }
            }
            n.rec.usages = map;
        }
        self.sync_rc(id);
        true
    }

    /// Adds `delta` to the usage of one class of one provider.
    pub fn add_usage(&mut self, uuid: &str, rc: &str, delta: i64) -> bool {
        let Some(id) = self.id_of(uuid) else {
            return false;
        };
        let rcid = self.rcs.get(rc);
        if let Some(Some(n)) = self.slots.get_mut(id as usize) {
            let e = n.rec.usages.entry(rc.to_string()).or_insert(0);
            *e += delta;
            let v = *e;
            if v == 0 {
                n.rec.usages.remove(rc);
            }
            if let Some(rcid) = rcid {
                if let Ok(i) = n.inv.binary_search_by_key(&rcid, |e| e.rc) {
                    n.inv[i].used = v;
                }
            }
        }
        self.sync_rc(id);
        true
    }

    /// Appends the providers of the tree rooted at `root` (depth first).
    pub(crate) fn tree_members_into(&self, root: u32, out: &mut Vec<u32>, stack: &mut Vec<u32>) {
        let start = out.len();
        stack.clear();
        stack.push(root);
        while let Some(x) = stack.pop() {
            if out.len() - start > self.slots.len() {
                break;
            }
            if let Some(n) = self.node(x) {
                out.push(x);
                stack.extend(n.children.iter().rev().copied());
            }
        }
    }

    /// Bitset of providers that are members of any of `aggs`.
    pub(crate) fn providers_in_any_agg(&self, aggs: &[u32]) -> BitSet {
        let mut b = BitSet::new(self.slot_count());
        for a in aggs {
            if let Some(list) = self.by_agg.get(*a as usize) {
                for p in list {
                    b.insert(*p);
                }
            }
        }
        b
    }

    /// Roots of every tree holding a provider that shares an aggregate with
    /// `sp` (including `sp`'s own root when `sp` is in any aggregate).
    pub(crate) fn sharing_anchors(&self, sp: u32) -> Vec<u32> {
        let Some(n) = self.node(sp) else {
            return Vec::new();
        };
        let mut seen = BitSet::new(self.slot_count());
        let mut out = Vec::new();
        for a in &n.aggs {
            if let Some(list) = self.by_agg.get(*a as usize) {
                for p in list {
                    if let Some(pn) = self.node(*p) {
                        if !seen.contains(pn.root) {
                            seen.insert(pn.root);
                            out.push(pn.root);
                        }
                    }
                }
            }
        }
        out
    }
}
