//! An in-memory, copy-on-write view of every record at one revision.
//!
//! The writer path updates it under the writer lock right after each commit,
//! so a `View` is always exactly the store at `revision`. Cloning one is
//! cheap (persistent maps share their nodes), which gives consistent
//! snapshots for free: an export, or a risk evaluation, works on the view it
//! took however many writes follow.

use std::sync::Arc;

use imbl::OrdMap;

use crate::domain::record::{Component, License, Material, ProductionLine, Record, Supplier};
use crate::domain::write::Change;
use crate::domain::Kind;

#[derive(Clone, Debug, Default)]
pub struct View {
    /// The store revision this view is.
    pub revision: u64,
    /// How many times the store was opened again after failing to write.
    /// A write that failed may have used a revision that the reopened store
    /// gives to another write, so whatever is cached by revision is cached
    /// by (epoch, revision).
    pub epoch: u64,
    /// The revision of the last change to anything but a licence: the risk
    /// model's structure stays valid while this stays the same.
    pub structure_revision: u64,
    pub materials: OrdMap<String, Arc<Material>>,
    pub suppliers: OrdMap<String, Arc<Supplier>>,
    pub components: OrdMap<String, Arc<Component>>,
    pub lines: OrdMap<String, Arc<ProductionLine>>,
    pub licenses: OrdMap<String, Arc<License>>,
}

impl View {
    /// A view of `records`, all at `revision`.
    pub fn new(revision: u64, records: impl IntoIterator<Item = Record>) -> View {
        let mut view = View {
            revision,
            structure_revision: revision,
            ..View::default()
        };
        for record in records {
            view.put(record);
        }
        view
    }

    fn put(&mut self, record: Record) {
        match record {
            Record::Material(r) => {
                self.materials.insert(r.code.clone(), Arc::new(r));
            }
            Record::Supplier(r) => {
                self.suppliers.insert(r.id.clone(), Arc::new(r));
            }
            Record::Component(r) => {
                self.components.insert(r.id.clone(), Arc::new(r));
            }
            Record::Line(r) => {
                self.lines.insert(r.id.clone(), Arc::new(r));
            }
            Record::License(r) => {
                self.licenses.insert(r.id.clone(), Arc::new(r));
            }
        }
    }

    fn remove(&mut self, kind: Kind, id: &str) {
        match kind {
            Kind::Material => drop(self.materials.remove(id)),
            Kind::Supplier => drop(self.suppliers.remove(id)),
            Kind::Component => drop(self.components.remove(id)),
            Kind::Line => drop(self.lines.remove(id)),
            Kind::License => drop(self.licenses.remove(id)),
        }
    }

    /// The view after `changes` were committed at `revision`.
    pub fn apply(&mut self, revision: u64, changes: Vec<Change>) {
        self.revision = revision;
        for change in changes {
            let key = change.key();
            if key.kind != Kind::License {
                self.structure_revision = revision;
            }
            match change.new {
                Some(record) => self.put(record),
                None => self.remove(key.kind, &key.id),
            }
        }
    }

    /// Every record, in export order: materials, suppliers, components,
    /// lines, licences, each by id.
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
        materials
            .chain(suppliers)
            .chain(components)
            .chain(lines)
            .chain(licenses)
    }

    /// How many records the view holds.
    pub fn record_count(&self) -> usize {
        self.materials.len()
            + self.suppliers.len()
            + self.components.len()
            + self.lines.len()
            + self.licenses.len()
    }
}
