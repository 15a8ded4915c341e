//! An in-memory, copy-on-write view of every record at one revision.
//!
//! The writer path builds the next view under the writer lock right after
//! each commit, so a `View` is always exactly the store at `revision`, and
//! publishes it once the commit is durable. Cloning one is cheap (persistent
//! maps share their nodes), which gives consistent snapshots for free: a
//! `Get`, a page of a list, an export or a risk evaluation works on the view
//! it took however many writes follow, so no reader ever sees part of a
//! write, and none waits for one.

use std::ops::Bound;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use crate::domain::record::{
    Component, License, LicenseStatus, Material, ProductionLine, Record, RecordKey, Shipment,
    Supplier,
};
use crate::domain::write::{Change, Lookup};
use crate::domain::{Error, Kind};

/// What a list request selects. Empty strings and `Unspecified` mean "any".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListQuery {
    Materials,
    Suppliers {
        country: String,
    },
    Components {
        supplier_id: String,
        material: String,
    },
    Lines {
        plant: String,
    },
    Licenses {
        supplier_id: String,
        material: String,
        status: LicenseStatus,
    },
    Shipments {
        component_id: String,
    },
}

/// One page of a list, read at one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct ListPage {
    pub records: Vec<Record>,
    /// Matches over all pages.
    pub total: u64,
    /// Whether records follow the last one of this page.
    pub more: bool,
    pub revision: u64,
}

/// `(value, record id)` pairs, in order: the ids of the records with one
/// value of a field (a supplier's components), in id order.
type Index = OrdSet<(String, String)>;

/// The secondary indexes lists filter by, and the writer's planner reads
/// to find what refers to a record.
#[derive(Clone, Debug, Default)]
struct Indexes {
    suppliers_by_country: Index,
    components_by_supplier: Index,
    components_by_material: Index,
    /// (input component, component that consumes it)
    components_by_input: Index,
    lines_by_plant: Index,
    /// (component, line whose bill of materials names it)
    lines_by_component: Index,
    licenses_by_supplier: Index,
    licenses_by_material: Index,
    licenses_by_status: Index,
    /// (component, shipment of it)
    shipments_by_component: Index,
}

fn status_key(status: LicenseStatus) -> String {
    (status as i32).to_string()
}

/// Adds or removes one `(value, id)` entry.
fn entry(index: &mut Index, value: &str, id: &str, add: bool) {
    let pair = (value.to_string(), id.to_string());
    if add {
        index.insert(pair);
    } else {
        index.remove(&pair);
    }
}

impl Indexes {
    fn supplier(&mut self, s: &Supplier, add: bool) {
        entry(&mut self.suppliers_by_country, &s.country, &s.id, add);
    }

    fn component(&mut self, c: &Component, add: bool) {
        for source in &c.sources {
            entry(
                &mut self.components_by_supplier,
                &source.supplier_id,
                &c.id,
                add,
            );
        }
        for content in &c.materials {
            entry(
                &mut self.components_by_material,
                &content.material,
                &c.id,
                add,
            );
        }
        for input in &c.inputs {
            entry(
                &mut self.components_by_input,
                &input.component_id,
                &c.id,
                add,
            );
        }
    }

    fn line(&mut self, l: &ProductionLine, add: bool) {
        entry(&mut self.lines_by_plant, &l.plant, &l.id, add);
        for item in &l.bom {
            entry(&mut self.lines_by_component, &item.component_id, &l.id, add);
        }
    }

    fn license(&mut self, l: &License, add: bool) {
        entry(&mut self.licenses_by_supplier, &l.supplier_id, &l.id, add);
        entry(&mut self.licenses_by_material, &l.material, &l.id, add);
        entry(
            &mut self.licenses_by_status,
            &status_key(l.status),
            &l.id,
            add,
        );
    }

    fn shipment(&mut self, s: &Shipment, add: bool) {
        entry(
            &mut self.shipments_by_component,
            &s.component_id,
            &s.id,
            add,
        );
    }
}

/// The ids under `value` in `index`, after `after`, in id order.
fn indexed<'a>(
    index: &'a Index,
    value: &'a str,
    after: Option<&str>,
) -> impl Iterator<Item = &'a String> + 'a {
    let from = match after {
        Some(id) => Bound::Excluded((value.to_string(), id.to_string())),
        None => Bound::Included((value.to_string(), String::new())),
    };
    index
        .range((from, Bound::Unbounded))
        .take_while(move |(v, _)| v == value)
        .map(|(_, id)| id)
}

/// The ids of `map` after `after`, in order.
fn all_after<'a, T>(
    map: &'a OrdMap<String, Arc<T>>,
    after: Option<&'a str>,
) -> Box<dyn Iterator<Item = &'a String> + 'a> {
    match after {
        Some(id) => Box::new(
            map.range::<_, str>((Bound::Excluded(id), Bound::Unbounded))
                .map(|(k, _)| k),
        ),
        None => Box::new(map.keys()),
    }
}

/// Where a listing's candidates come from: every record of the kind, or one
/// value of an index. `exact` when every candidate matches the query (so
/// that counting them reads no record).
struct Candidates<'a> {
    index: Option<(&'a Index, &'a str)>,
    exact: bool,
}

impl<'a> Candidates<'a> {
    fn all() -> Self {
        Candidates {
            index: None,
            exact: true,
        }
    }

    fn by(index: &'a Index, value: &'a str, exact: bool) -> Self {
        Candidates {
            index: Some((index, value)),
            exact,
        }
    }

    fn ids<T>(
        &self,
        map: &'a OrdMap<String, Arc<T>>,
        after: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        match self.index {
            Some((index, value)) => Box::new(indexed(index, value, after)),
            None => all_after(map, after),
        }
    }
}

/// One page of the records of `map` that `candidates` names and `matches`
/// accepts, after `after`, with the count over all pages.
fn page<'a, T: Clone>(
    map: &'a OrdMap<String, Arc<T>>,
    candidates: Candidates<'a>,
    matches: impl Fn(&T) -> bool,
    wrap: impl Fn(T) -> Record,
    after: Option<&'a str>,
    limit: usize,
) -> (Vec<Record>, u64, bool) {
    let lookup = |id: &String| map.get(id.as_str());
    let mut records = Vec::with_capacity(limit.min(1024));
    let mut more = false;
    for record in candidates.ids(map, after).filter_map(lookup) {
        if !matches(record) {
            continue;
        }
        if records.len() == limit {
            more = true;
            break;
        }
        records.push(wrap(T::clone(record)));
    }
    let total = match (candidates.index, candidates.exact) {
        (None, true) => map.len(),
        (Some((index, value)), true) => indexed(index, value, None).count(),
        _ => candidates
            .ids(map, None)
            .filter_map(lookup)
            .filter(|r| matches(r))
            .count(),
    };
    (records, total as u64, more)
}

#[derive(Clone, Debug, Default)]
pub struct View {
    /// The store revision this view is.
    pub revision: u64,
    /// How many times the store was opened again after failing to write.
    /// A write that failed may have used a revision that the reopened store
    /// gives to another write, so whatever is cached by revision is cached
    /// by (epoch, revision).
    pub epoch: u64,
    /// The revision of the last change to anything but a licence or a
    /// shipment: the risk model's structure stays valid while this stays
    /// the same.
    pub structure_revision: u64,
    /// The licence log's head at this revision: every licence change up to
    /// it is in the view.
    pub log_head: u64,
    pub materials: OrdMap<String, Arc<Material>>,
    pub suppliers: OrdMap<String, Arc<Supplier>>,
    pub components: OrdMap<String, Arc<Component>>,
    pub lines: OrdMap<String, Arc<ProductionLine>>,
    pub licenses: OrdMap<String, Arc<License>>,
    pub shipments: OrdMap<String, Arc<Shipment>>,
    /// The pools the newest licence changes touched, oldest first: for each
    /// change, (revision, supplier id, material) of the licence before it
    /// and after it. The risk engine re-simulates only those pools' cones.
    pub license_touches: imbl::Vector<(u64, String, String)>,
    /// The components whose shipments the newest changes touched, oldest
    /// first: (revision, component id). Their cones are simulated again.
    pub shipment_touches: imbl::Vector<(u64, String)>,
    /// Every licence and shipment change after this revision is in
    /// `license_touches` and `shipment_touches`.
    pub touches_after: u64,
    indexes: Indexes,
}

/// Licence touches, and shipment touches, a view keeps, at most.
const MAX_TOUCHES: usize = 4096;

impl View {
    /// A view of `records`, all at `revision`.
    pub fn new(revision: u64, records: impl IntoIterator<Item = Record>) -> View {
        let mut view = View {
            revision,
            structure_revision: revision,
            touches_after: revision,
            ..View::default()
        };
        for record in records {
            view.put(record);
        }
        view
    }

    /// The view of every record of `snapshot`, of store epoch `epoch`
    /// (built on the blocking pool: a large store takes a while).
    pub(crate) async fn load(
        snapshot: crate::store::Snapshot,
        epoch: u64,
    ) -> Result<Arc<View>, Error> {
        tokio::task::spawn_blocking(move || {
            let mut view = View::new(snapshot.revision, snapshot.records);
            view.epoch = epoch;
            view.log_head = snapshot.log_head;
            Arc::new(view)
        })
        .await
        .map_err(|e| Error::Internal(format!("loading the view failed: {e}")))
    }

    /// Stores `record`, replacing the record of its kind and id, and keeps
    /// the indexes in step (the replaced record's entries go).
    fn put(&mut self, record: Record) {
        let idx = &mut self.indexes;
        match record {
            Record::Material(r) => {
                self.materials.insert(r.code.clone(), Arc::new(r));
            }
            Record::Supplier(r) => {
                if let Some(old) = self.suppliers.get(&r.id) {
                    idx.supplier(old, false);
                }
                idx.supplier(&r, true);
                self.suppliers.insert(r.id.clone(), Arc::new(r));
            }
            Record::Component(r) => {
                if let Some(old) = self.components.get(&r.id) {
                    idx.component(old, false);
                }
                idx.component(&r, true);
                self.components.insert(r.id.clone(), Arc::new(r));
            }
            Record::Line(r) => {
                if let Some(old) = self.lines.get(&r.id) {
                    idx.line(old, false);
                }
                idx.line(&r, true);
                self.lines.insert(r.id.clone(), Arc::new(r));
            }
            Record::License(r) => {
                if let Some(old) = self.licenses.get(&r.id) {
                    idx.license(old, false);
                }
                idx.license(&r, true);
                self.licenses.insert(r.id.clone(), Arc::new(r));
            }
            Record::Shipment(r) => {
                if let Some(old) = self.shipments.get(&r.id) {
                    idx.shipment(old, false);
                }
                idx.shipment(&r, true);
                self.shipments.insert(r.id.clone(), Arc::new(r));
            }
        }
    }

    fn remove(&mut self, kind: Kind, id: &str) {
        let idx = &mut self.indexes;
        match kind {
            Kind::Material => drop(self.materials.remove(id)),
            Kind::Supplier => {
                if let Some(old) = self.suppliers.remove(id) {
                    idx.supplier(&old, false);
                }
            }
            Kind::Component => {
                if let Some(old) = self.components.remove(id) {
                    idx.component(&old, false);
                }
            }
            Kind::Line => {
                if let Some(old) = self.lines.remove(id) {
                    idx.line(&old, false);
                }
            }
            Kind::License => {
                if let Some(old) = self.licenses.remove(id) {
                    idx.license(&old, false);
                }
            }
            Kind::Shipment => {
                if let Some(old) = self.shipments.remove(id) {
                    idx.shipment(&old, false);
                }
            }
        }
    }

    /// The view after `changes` were committed at `revision`.
    pub fn apply(&mut self, revision: u64, changes: Vec<Change>) {
        self.revision = revision;
        for change in changes {
            let key = change.key();
            if key.kind == Kind::Shipment {
                let before = self.shipments.get(&key.id).cloned();
                let after = match &change.new {
                    Some(Record::Shipment(s)) => Some(s),
                    _ => None,
                };
                for s in before.as_deref().into_iter().chain(after) {
                    self.shipment_touches
                        .push_back((revision, s.component_id.clone()));
                }
                while self.shipment_touches.len() > MAX_TOUCHES {
                    if let Some((gone, ..)) = self.shipment_touches.pop_front() {
                        self.touches_after = self.touches_after.max(gone);
                    }
                }
            } else if key.kind != Kind::License {
                self.structure_revision = revision;
            } else {
                let before = self.licenses.get(&key.id).cloned();
                let after = match &change.new {
                    Some(Record::License(l)) => Some(l),
                    _ => None,
                };
                for l in before.as_deref().into_iter().chain(after) {
                    self.license_touches.push_back((
                        revision,
                        l.supplier_id.clone(),
                        l.material.clone(),
                    ));
                }
                while self.license_touches.len() > MAX_TOUCHES {
                    if let Some((gone, ..)) = self.license_touches.pop_front() {
                        self.touches_after = self.touches_after.max(gone);
                    }
                }
            }
            match change.new {
                Some(record) => self.put(record),
                None => self.remove(key.kind, &key.id),
            }
        }
    }

    /// Whether some line is of `plant`.
    pub fn has_plant(&self, plant: &str) -> bool {
        indexed(&self.indexes.lines_by_plant, plant, None)
            .next()
            .is_some()
    }

    /// The licences of supplier `supplier_id`, in id order.
    pub fn licences_of<'a>(
        &'a self,
        supplier_id: &'a str,
    ) -> impl Iterator<Item = &'a License> + 'a {
        indexed(&self.indexes.licenses_by_supplier, supplier_id, None)
            .filter_map(|id| self.licenses.get(id).map(|l| &**l))
    }

    /// The (supplier id, material) of every licence changed after
    /// `revision`, if this view still knows them all.
    pub fn licence_touches_since(&self, revision: u64) -> Option<Vec<(&str, &str)>> {
        if revision < self.touches_after {
            return None;
        }
        let first = self
            .license_touches
            .iter()
            .position(|(r, ..)| *r > revision)
            .unwrap_or(self.license_touches.len());
        Some(
            self.license_touches
                .iter()
                .skip(first)
                .map(|(_, s, m)| (s.as_str(), m.as_str()))
                .collect(),
        )
    }

    /// The components of every shipment changed after `revision`, if this
    /// view still knows them all.
    pub fn shipment_touches_since(&self, revision: u64) -> Option<Vec<&str>> {
        if revision < self.touches_after {
            return None;
        }
        Some(
            self.shipment_touches
                .iter()
                .filter(|(r, _)| *r > revision)
                .map(|(_, c)| c.as_str())
                .collect(),
        )
    }

    /// The record at `key`, if the view holds it.
    pub fn get(&self, key: &RecordKey) -> Option<Record> {
        let id = key.id.as_str();
        Some(match key.kind {
            Kind::Material => Record::Material(Material::clone(self.materials.get(id)?)),
            Kind::Supplier => Record::Supplier(Supplier::clone(self.suppliers.get(id)?)),
            Kind::Component => Record::Component(Component::clone(self.components.get(id)?)),
            Kind::Line => Record::Line(ProductionLine::clone(self.lines.get(id)?)),
            Kind::License => Record::License(License::clone(self.licenses.get(id)?)),
            Kind::Shipment => Record::Shipment(Shipment::clone(self.shipments.get(id)?)),
        })
    }

    /// Every record that refers to `key`, in key order (by kind, then id).
    pub fn referrers(&self, key: &RecordKey) -> Vec<RecordKey> {
        let idx = &self.indexes;
        let of = |index: &Index, kind: Kind| {
            indexed(index, &key.id, None)
                .map(move |id| RecordKey::new(kind, id.clone()))
                .collect::<Vec<_>>()
        };
        match key.kind {
            Kind::Material => [
                of(&idx.components_by_material, Kind::Component),
                of(&idx.licenses_by_material, Kind::License),
            ]
            .concat(),
            Kind::Supplier => [
                of(&idx.components_by_supplier, Kind::Component),
                of(&idx.licenses_by_supplier, Kind::License),
            ]
            .concat(),
            Kind::Component => [
                of(&idx.components_by_input, Kind::Component),
                of(&idx.lines_by_component, Kind::Line),
                of(&idx.shipments_by_component, Kind::Shipment),
            ]
            .concat(),
            Kind::Line | Kind::License | Kind::Shipment => Vec::new(),
        }
    }

    /// One page of `query`: up to `limit` records after the id `after`, in
    /// id order, with the number of matches over all pages.
    pub fn list(&self, query: &ListQuery, after: Option<&str>, limit: usize) -> ListPage {
        let idx = &self.indexes;
        let (records, total, more) = match query {
            ListQuery::Materials => page(
                &self.materials,
                Candidates::all(),
                |_| true,
                Record::Material,
                after,
                limit,
            ),
            ListQuery::Suppliers { country } => page(
                &self.suppliers,
                match country.as_str() {
                    "" => Candidates::all(),
                    c => Candidates::by(&idx.suppliers_by_country, c, true),
                },
                |_| true,
                Record::Supplier,
                after,
                limit,
            ),
            ListQuery::Components {
                supplier_id,
                material,
            } => page(
                &self.components,
                match (supplier_id.as_str(), material.as_str()) {
                    ("", "") => Candidates::all(),
                    ("", m) => Candidates::by(&idx.components_by_material, m, true),
                    (s, m) => Candidates::by(&idx.components_by_supplier, s, m.is_empty()),
                },
                |c: &Component| {
                    material.is_empty() || c.materials.iter().any(|m| m.material == *material)
                },
                Record::Component,
                after,
                limit,
            ),
            ListQuery::Lines { plant } => page(
                &self.lines,
                match plant.as_str() {
                    "" => Candidates::all(),
                    p => Candidates::by(&idx.lines_by_plant, p, true),
                },
                |_| true,
                Record::Line,
                after,
                limit,
            ),
            ListQuery::Licenses {
                supplier_id,
                material,
                status,
            } => {
                let status_text = status_key(*status);
                let any_status = *status == LicenseStatus::Unspecified;
                page(
                    &self.licenses,
                    match (supplier_id.as_str(), material.as_str()) {
                        ("", "") if any_status => Candidates::all(),
                        ("", "") => Candidates::by(&idx.licenses_by_status, &status_text, true),
                        ("", m) => Candidates::by(&idx.licenses_by_material, m, any_status),
                        (s, m) => {
                            Candidates::by(&idx.licenses_by_supplier, s, m.is_empty() && any_status)
                        }
                    },
                    |l: &License| {
                        (material.is_empty() || l.material == *material)
                            && (any_status || l.status == *status)
                    },
                    Record::License,
                    after,
                    limit,
                )
            }
            ListQuery::Shipments { component_id } => page(
                &self.shipments,
                match component_id.as_str() {
                    "" => Candidates::all(),
                    c => Candidates::by(&idx.shipments_by_component, c, true),
                },
                |_| true,
                Record::Shipment,
                after,
                limit,
            ),
        };
        ListPage {
            records,
            total,
            more,
            revision: self.revision,
        }
    }

    /// Every record, in export order: materials, suppliers, components,
    /// lines, licences, shipments, each by id.
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let materials = self
            .materials
            .values()
            .map(|r| Record::Material((**r).clone()));
        let suppliers = self
            .suppliers
            .values()
            .map(|r| Record::Supplier((**r).clone()));
        let components = self
            .components
            .values()
            .map(|r| Record::Component((**r).clone()));
        let lines = self.lines.values().map(|r| Record::Line((**r).clone()));
        let licenses = self
            .licenses
            .values()
            .map(|r| Record::License((**r).clone()));
        let shipments = self
            .shipments
            .values()
            .map(|r| Record::Shipment((**r).clone()));
        materials
            .chain(suppliers)
            .chain(components)
            .chain(lines)
            .chain(licenses)
            .chain(shipments)
    }

    /// How many records the view holds.
    pub fn record_count(&self) -> usize {
        self.materials.len()
            + self.suppliers.len()
            + self.components.len()
            + self.lines.len()
            + self.licenses.len()
            + self.shipments.len()
    }
}

/// What the writer's planner reads: the view is exactly the store at its
/// revision, so a plan made on the newest view (under the writer lock) is a
/// plan made on the store.
impl Lookup for View {
    fn get(&self, key: &RecordKey) -> Result<Option<Record>, Error> {
        Ok(View::get(self, key))
    }

    fn contains(&self, key: &RecordKey) -> Result<bool, Error> {
        let id = key.id.as_str();
        Ok(match key.kind {
            Kind::Material => self.materials.contains_key(id),
            Kind::Supplier => self.suppliers.contains_key(id),
            Kind::Component => self.components.contains_key(id),
            Kind::Line => self.lines.contains_key(id),
            Kind::License => self.licenses.contains_key(id),
            Kind::Shipment => self.shipments.contains_key(id),
        })
    }

    fn referrers(&self, key: &RecordKey) -> Result<Vec<RecordKey>, Error> {
        Ok(View::referrers(self, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::{BomItem, ComponentInput, MaterialContent, Source};
    use proptest::prelude::*;

    const IDS: &[&str] = &["A", "B", "C", "D", "E", "F"];
    const VALUES: &[&str] = &["CN", "DE", "JP"];
    const MATERIALS: &[&str] = &["DY", "TB"];

    /// One step: put a record built from small choices, or remove one.
    #[derive(Clone, Debug)]
    enum Step {
        Supplier(usize, usize),
        Component(usize, Vec<usize>, Vec<usize>, Vec<usize>),
        Line(usize, usize, Vec<usize>),
        License(usize, usize, usize, i32),
        Remove(Kind, usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        let id = 0..IDS.len();
        prop_oneof![
            (id.clone(), 0..VALUES.len()).prop_map(|(i, c)| Step::Supplier(i, c)),
            (
                id.clone(),
                proptest::collection::vec(0..IDS.len(), 0..3),
                proptest::collection::vec(0..MATERIALS.len(), 0..3),
                proptest::collection::vec(0..IDS.len(), 0..3)
            )
                .prop_map(|(i, s, m, inputs)| Step::Component(i, s, m, inputs)),
            (
                id.clone(),
                0..VALUES.len(),
                proptest::collection::vec(0..IDS.len(), 0..3)
            )
                .prop_map(|(i, p, bom)| Step::Line(i, p, bom)),
            (id.clone(), 0..IDS.len(), 0..MATERIALS.len(), 1..5i32)
                .prop_map(|(i, s, m, st)| Step::License(i, s, m, st)),
            (
                prop_oneof![
                    Just(Kind::Supplier),
                    Just(Kind::Component),
                    Just(Kind::Line),
                    Just(Kind::License)
                ],
                id
            )
                .prop_map(|(k, i)| Step::Remove(k, i)),
        ]
    }

    fn apply(view: &mut View, step: &Step) {
        let id = |i: &usize| IDS[*i].to_string();
        match step {
            Step::Supplier(i, c) => view.put(Record::Supplier(Supplier {
                id: id(i),
                country: VALUES[*c].into(),
                ..Default::default()
            })),
            Step::Component(i, sources, materials, inputs) => {
                view.put(Record::Component(Component {
                    id: id(i),
                    sources: sources
                        .iter()
                        .map(|s| Source {
                            supplier_id: id(s),
                            share: 1.0,
                        })
                        .collect(),
                    materials: materials
                        .iter()
                        .map(|m| MaterialContent {
                            material: MATERIALS[*m].into(),
                            grams_per_unit: 1.0,
                        })
                        .collect(),
                    inputs: inputs
                        .iter()
                        .map(|c| ComponentInput {
                            component_id: id(c),
                            quantity: 1.0,
                        })
                        .collect(),
                    ..Default::default()
                }))
            }
            Step::Line(i, p, bom) => view.put(Record::Line(ProductionLine {
                id: id(i),
                plant: VALUES[*p].into(),
                bom: bom
                    .iter()
                    .map(|c| BomItem {
                        component_id: id(c),
                        quantity: 1.0,
                    })
                    .collect(),
                ..Default::default()
            })),
            Step::License(i, s, m, st) => view.put(Record::License(License {
                id: id(i),
                supplier_id: id(s),
                material: MATERIALS[*m].into(),
                status: LicenseStatus::from_number(*st),
                ..Default::default()
            })),
            Step::Remove(kind, i) => view.remove(*kind, &id(i)),
        }
    }

    /// What a query means, written plainly.
    type Meaning = Box<dyn Fn(&Record) -> bool>;

    /// Every query the filters can make, with its meaning.
    fn queries() -> Vec<(ListQuery, Meaning)> {
        let mut all: Vec<(ListQuery, Meaning)> = Vec::new();
        let any = |filter: &str, value: &str| filter.is_empty() || filter == value;
        for country in ["", "CN", "DE", "JP"] {
            all.push((
                ListQuery::Suppliers {
                    country: country.into(),
                },
                Box::new(move |r| matches!(r, Record::Supplier(s) if any(country, &s.country))),
            ));
            all.push((
                ListQuery::Lines {
                    plant: country.into(),
                },
                Box::new(move |r| matches!(r, Record::Line(l) if any(country, &l.plant))),
            ));
        }
        for supplier in ["", "A", "B", "F"] {
            for material in ["", "DY", "TB"] {
                all.push((
                    ListQuery::Components {
                        supplier_id: supplier.into(),
                        material: material.into(),
                    },
                    Box::new(move |r| {
                        matches!(r, Record::Component(c)
                            if (supplier.is_empty() || c.sources.iter().any(|s| s.supplier_id == supplier))
                            && (material.is_empty() || c.materials.iter().any(|m| m.material == material)))
                    }),
                ));
                for status in 0..5 {
                    let status = LicenseStatus::from_number(status);
                    all.push((
                        ListQuery::Licenses {
                            supplier_id: supplier.into(),
                            material: material.into(),
                            status,
                        },
                        Box::new(move |r| {
                            matches!(r, Record::License(l)
                                if any(supplier, &l.supplier_id) && any(material, &l.material)
                                && (status == LicenseStatus::Unspecified || status == l.status))
                        }),
                    ));
                }
            }
        }
        all
    }

    proptest! {
        /// Whatever was put and removed, each listing, read page by page,
        /// is exactly the records that match it, in id order, with the
        /// right count on every page.
        #[test]
        fn listings_match_a_plain_filter(steps in proptest::collection::vec(step(), 0..40), size in 1usize..4) {
            let mut view = View::default();
            for step in &steps {
                apply(&mut view, step);
            }
            let every: Vec<Record> = view.records().collect();
            for (query, matches) in queries() {
                let expected: Vec<Record> = every.iter().filter(|r| matches(r)).cloned().collect();
                let mut listed = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = view.list(&query, after.as_deref(), size);
                    prop_assert_eq!(page.total as usize, expected.len(), "{:?}", query);
                    listed.extend(page.records.iter().cloned());
                    if !page.more {
                        break;
                    }
                    after = page.records.last().map(|r| r.id().to_string());
                }
                prop_assert_eq!(&listed, &expected, "{:?}", query);
            }
            // What refers to each record is what the records say they refer
            // to, in key order: the writer's planner reads this.
            for kind in Kind::ALL {
                for id in IDS {
                    let key = RecordKey::new(kind, *id);
                    let mut expected: Vec<RecordKey> = every
                        .iter()
                        .filter(|r| r.references().iter().any(|x| x.is_to(&key)))
                        .map(Record::key)
                        .collect();
                    expected.sort();
                    expected.dedup();
                    prop_assert_eq!(View::referrers(&view, &key), expected, "{}", key);
                }
            }
        }
    }
}
