//! Turns a write request into the exact set of record changes to commit, or
//! refuses it whole.
//!
//! Planning reads the current state through [`Lookup`] and never writes: the
//! caller holds the single writer path while it plans and commits, so what was
//! read is still true when the plan is applied.

use std::borrow::Cow;
use std::collections::HashSet;

use foldhash::{HashMap, HashMapExt};

use super::date::Date;
use super::error::{Error, InvalidReason, Violation};
use super::record::{Component, Kind, License, LicenseStatus, Record, RecordKey};
use super::validate::{check_record, field_path, identifier_problem};

/// Read access to the state a write is planned against.
pub trait Lookup {
    fn get(&self, key: &RecordKey) -> Result<Option<Record>, Error>;

    fn contains(&self, key: &RecordKey) -> Result<bool, Error> {
        Ok(self.get(key)?.is_some())
    }

    /// Every record that refers to `key`, in key order.
    fn referrers(&self, key: &RecordKey) -> Result<Vec<RecordKey>, Error>;
}

/// Where a record sits in its request, so that errors name its fields by the
/// paths the client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `records[i].<kind>` of an upsert or import.
    Records(usize),
    /// The request's own top-level fields (`UpdateLicenseStatus`).
    Root,
}

/// A record as it arrived in a write request.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub origin: Origin,
    pub record: Record,
}

impl Incoming {
    pub fn path(&self) -> String {
        match self.origin {
            Origin::Records(i) => format!("records[{i}].{}", self.record.kind().name()),
            Origin::Root => String::new(),
        }
    }
}

/// One record changing: created (`old` is `None`), replaced, or deleted
/// (`new` is `None`).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub old: Option<Record>,
    pub new: Option<Record>,
}

impl Change {
    pub fn key(&self) -> RecordKey {
        self.new
            .as_ref()
            .or(self.old.as_ref())
            .map(Record::key)
            .expect("a change has an old or a new record")
    }
}

/// What a record's non-zero `revision` means in a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revisions {
    /// A precondition: the stored record must be at exactly that revision.
    Preconditions,
    /// Nothing: an import loads an export anywhere, whatever its revisions.
    Ignored,
}

/// Plans creating or replacing `incoming`. `malformed` holds violations the
/// caller already found while decoding the request (an unparsable date, say);
/// they count as malformed fields. With [`Revisions::Preconditions`], a
/// non-zero record revision must equal the stored one.
///
/// Returns only the records whose content changes; an empty plan means the
/// request changes nothing.
pub fn plan_upsert(
    lookup: &dyn Lookup,
    incoming: Vec<Incoming>,
    malformed: Vec<Violation>,
    revisions: Revisions,
) -> Result<Vec<Change>, Error> {
    let mut field_violations = malformed;
    for item in &incoming {
        check_record(&item.record, &item.path(), &mut field_violations);
    }

    // One record per key: a second copy would make "the" new state ambiguous.
    let mut by_key: ByKey = HashMap::with_capacity(incoming.len());
    for (i, item) in incoming.iter().enumerate() {
        if item.record.id().is_empty() {
            continue;
        }
        let key = (item.record.kind(), item.record.id());
        if let Some(&first) = by_key.get(&key) {
            field_violations.push(Violation::new(
                field_path(&item.path(), item.record.kind().id_field()),
                format!(
                    "{} {:?} appears more than once in the request (first at {})",
                    item.record.kind(),
                    item.record.id(),
                    incoming[first].path()
                ),
            ));
        } else {
            by_key.insert(key, i);
        }
    }

    let reference_violations = check_references(lookup, &incoming, &by_key)?;
    if !field_violations.is_empty() || !reference_violations.is_empty() {
        let reason = if field_violations.is_empty() {
            InvalidReason::UnknownReference
        } else {
            InvalidReason::InvalidRecord
        };
        let mut violations = field_violations;
        violations.extend(reference_violations);
        return Err(invalid(reason, violations, Vec::new()));
    }

    check_cycles(lookup, &incoming, &by_key)?;

    let mut changes = Vec::with_capacity(incoming.len());
    for item in incoming {
        let key = item.record.key();
        let old = lookup.get(&key)?;
        let expected = item.record.revision();
        if revisions == Revisions::Preconditions && expected != 0 {
            let actual = old.as_ref().map(Record::revision);
            if actual != Some(expected) {
                return Err(Error::RevisionMismatch {
                    key,
                    expected,
                    actual,
                });
            }
        }
        match &old {
            Some(old) if old.same_content(&item.record) => {}
            _ => changes.push(Change {
                old,
                new: Some(item.record),
            }),
        }
    }
    Ok(changes)
}

/// Plans deleting `keys` (with their positions in the request). Every record
/// must exist, and no record outside the request may still refer to one.
pub fn plan_delete(lookup: &dyn Lookup, keys: &[RecordKey]) -> Result<Vec<Change>, Error> {
    let mut seen = HashSet::new();
    let mut changes = Vec::new();
    let mut missing = Vec::new();
    for key in keys {
        if !seen.insert(key) {
            continue;
        }
        match lookup.get(key)? {
            Some(old) => changes.push(Change {
                old: Some(old),
                new: None,
            }),
            None => missing.push(key.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(Error::NotFound { missing });
    }
    for key in keys {
        let remaining: Vec<RecordKey> = lookup
            .referrers(key)?
            .into_iter()
            .filter(|r| !seen.contains(r))
            .collect();
        if !remaining.is_empty() {
            return Err(Error::StillReferenced {
                target: key.clone(),
                referrers: remaining,
            });
        }
    }
    Ok(changes)
}

/// How many violations an error message spells out; all of them are in the
/// error's details.
const VIOLATIONS_IN_MESSAGE: usize = 5;

fn invalid(reason: InvalidReason, violations: Vec<Violation>, cycle: Vec<String>) -> Error {
    let mut listed: Vec<String> = violations
        .iter()
        .take(VIOLATIONS_IN_MESSAGE)
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect();
    if violations.len() > VIOLATIONS_IN_MESSAGE {
        listed.push(format!(
            "and {} more",
            violations.len() - VIOLATIONS_IN_MESSAGE
        ));
    }
    let summary = match reason {
        InvalidReason::CycleDetected => format!(
            "refused, nothing stored: the component inputs would form the cycle {}",
            cycle.join(" -> ")
        ),
        _ => format!("refused, nothing stored: {}", listed.join("; ")),
    };
    Error::Invalid {
        reason,
        summary,
        violations,
        cycle,
    }
}

/// Every reference must name a record that exists once the request is
/// applied: in the request itself or already stored.
fn check_references<'a>(
    lookup: &dyn Lookup,
    incoming: &'a [Incoming],
    by_key: &ByKey<'a>,
) -> Result<Vec<Violation>, Error> {
    // What the store was asked about, so that it is asked once per target.
    let mut stored: HashMap<(Kind, &'a str), bool> = HashMap::new();
    let mut violations = Vec::new();
    for item in incoming {
        for reference in item.record.references() {
            // A malformed id is already reported as such.
            if identifier_problem(reference.id).is_some() {
                continue;
            }
            let target = (reference.kind, reference.id);
            let exists = by_key.contains_key(&target)
                || match stored.get(&target) {
                    Some(&exists) => exists,
                    None => {
                        let key = RecordKey::new(reference.kind, reference.id);
                        let exists = lookup.contains(&key)?;
                        stored.insert(target, exists);
                        exists
                    }
                };
            if !exists {
                violations.push(Violation::new(
                    field_path(&item.path(), &reference.field.to_string()),
                    format!(
                        "no {} {:?} exists, in the store or in this request",
                        reference.kind, reference.id
                    ),
                ));
            }
        }
    }
    Ok(violations)
}

/// The component input graph must stay acyclic. Any new cycle passes through
/// a component of the request, so a depth-first search from each of them, over
/// the request's components and the stored ones, finds it.
fn check_cycles(lookup: &dyn Lookup, incoming: &[Incoming], by_key: &ByKey) -> Result<(), Error> {
    let mut graph = Graph::default();
    // The request's components first: they take the place of stored ones.
    let components: Vec<(usize, &Component)> = incoming
        .iter()
        .filter_map(|item| match &item.record {
            Record::Component(c) => Some((graph.node(Cow::Borrowed(&c.id)), c)),
            _ => None,
        })
        .collect();
    if components.is_empty() {
        return Ok(());
    }
    for &(node, c) in &components {
        let inputs = c
            .inputs
            .iter()
            .map(|input| graph.node(Cow::Borrowed(&input.component_id)))
            .collect();
        graph.inputs[node] = Some(inputs);
    }
    let mut roots: Vec<usize> = components.iter().map(|&(node, _)| node).collect();
    roots.sort_by(|&a, &b| graph.names[a].cmp(&graph.names[b]));

    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state: Vec<u8> = Vec::new();
    for root in roots {
        state.resize(graph.names.len(), NEW);
        if state[root] != NEW {
            continue;
        }
        // The current path, each node with the index of its next input.
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = ON_PATH;
        while let Some(&(node, next)) = path.last() {
            let inputs = graph.inputs_of(node, lookup)?;
            let Some(&child) = inputs.get(next) else {
                state[node] = DONE;
                path.pop();
                continue;
            };
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            state.resize(graph.names.len(), NEW);
            match state[child] {
                DONE => {}
                ON_PATH => {
                    let start = path
                        .iter()
                        .position(|&(n, _)| n == child)
                        .expect("a node on the path is in the path");
                    let cycle: Vec<String> = path[start..]
                        .iter()
                        .map(|&(n, _)| graph.names[n].to_string())
                        .collect();
                    return Err(cycle_error(cycle, incoming, by_key));
                }
                _ => {
                    state[child] = ON_PATH;
                    path.push((child, 0));
                }
            }
        }
    }
    Ok(())
}

/// The records of a request by kind and id, borrowed from it.
type ByKey<'a> = HashMap<(Kind, &'a str), usize>;

/// The component input graph a cycle check walks: each component a number,
/// its id borrowed from the request or, for a stored one, read from the
/// store the first time the walk reaches it.
#[derive(Default)]
struct Graph<'a> {
    numbers: HashMap<Cow<'a, str>, usize>,
    names: Vec<Cow<'a, str>>,
    /// A component's inputs; `None` until read from the store.
    inputs: Vec<Option<Vec<usize>>>,
}

impl<'a> Graph<'a> {
    fn node(&mut self, id: Cow<'a, str>) -> usize {
        if let Some(&n) = self.numbers.get(id.as_ref()) {
            return n;
        }
        let n = self.names.len();
        self.names.push(id.clone());
        self.numbers.insert(id, n);
        self.inputs.push(None);
        n
    }

    /// The inputs of `node`: the request's when it holds the component, else
    /// the store's (none when the store has no such component).
    fn inputs_of(&mut self, node: usize, lookup: &dyn Lookup) -> Result<&[usize], Error> {
        if self.inputs[node].is_none() {
            let key = RecordKey::new(Kind::Component, self.names[node].as_ref());
            let inputs = match lookup.get(&key)? {
                Some(Record::Component(c)) => c
                    .inputs
                    .into_iter()
                    .map(|input| self.node(Cow::Owned(input.component_id)))
                    .collect(),
                _ => Vec::new(),
            };
            self.inputs[node] = Some(inputs);
        }
        Ok(self.inputs[node].as_deref().unwrap_or_default())
    }
}

/// Describes a cycle (its nodes in edge order, without repeating the first),
/// starting at its smallest id, and points at the input field of a request
/// component that closes it.
fn cycle_error(mut cycle: Vec<String>, incoming: &[Incoming], by_key: &ByKey) -> Error {
    let smallest = (0..cycle.len())
        .min_by(|&a, &b| cycle[a].cmp(&cycle[b]))
        .unwrap_or(0);
    cycle.rotate_left(smallest);
    let mut violations = Vec::new();
    for (i, node) in cycle.iter().enumerate() {
        let next = &cycle[(i + 1) % cycle.len()];
        let Some(&at) = by_key.get(&(Kind::Component, node.as_str())) else {
            continue;
        };
        if let Record::Component(c) = &incoming[at].record {
            if let Some(j) = c
                .inputs
                .iter()
                .position(|input| input.component_id == *next)
            {
                let mut shown = cycle.clone();
                shown.push(cycle[0].clone());
                violations.push(Violation::new(
                    field_path(&incoming[at].path(), &format!("inputs[{j}].component_id")),
                    format!("closes the input cycle {}", shown.join(" -> ")),
                ));
                break;
            }
        }
    }
    let first = cycle[0].clone();
    cycle.push(first);
    invalid(InvalidReason::CycleDetected, violations, cycle)
}

/// A decision on a licence (`UpdateLicenseStatus`): every `None` keeps the
/// stored value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LicenseDecision {
    pub id: String,
    pub status: Option<LicenseStatus>,
    pub decided_on: Option<Date>,
    pub quantity_kg: Option<f64>,
    pub valid_from: Option<Date>,
    pub valid_until: Option<Date>,
    /// When non-zero, the licence's current revision (a precondition).
    pub revision: u64,
}

impl LicenseDecision {
    /// `license` with this decision's fields applied.
    pub fn apply(&self, mut license: License) -> License {
        license.status = self.status.unwrap_or(license.status);
        license.decided_on = self.decided_on.or(license.decided_on);
        license.quantity_kg = self.quantity_kg.unwrap_or(license.quantity_kg);
        license.valid_from = self.valid_from.or(license.valid_from);
        license.valid_until = self.valid_until.or(license.valid_until);
        license.revision = self.revision;
        license
    }
}

/// Plans recording `decision`: the licence as stored before it, and the
/// changes (none when the decision changes nothing).
pub fn plan_decision(
    lookup: &dyn Lookup,
    decision: &LicenseDecision,
    malformed: Vec<Violation>,
) -> Result<(License, Vec<Change>), Error> {
    let key = RecordKey::new(Kind::License, decision.id.clone());
    let Some(Record::License(current)) = lookup.get(&key)? else {
        return Err(Error::NotFound { missing: vec![key] });
    };
    let updated = decision.apply(current.clone());
    let changes = plan_upsert(
        lookup,
        vec![Incoming {
            origin: Origin::Root,
            record: Record::License(updated),
        }],
        malformed,
        Revisions::Preconditions,
    )?;
    Ok((current, changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::{Component, ComponentInput, License, LicenseStatus, Supplier};
    use std::collections::BTreeMap;

    /// The state a plan reads, as a plain map.
    #[derive(Default)]
    struct Memory(BTreeMap<RecordKey, Record>);

    impl Lookup for Memory {
        fn get(&self, key: &RecordKey) -> Result<Option<Record>, Error> {
            Ok(self.0.get(key).cloned())
        }
        fn referrers(&self, key: &RecordKey) -> Result<Vec<RecordKey>, Error> {
            Ok(self
                .0
                .values()
                .filter(|r| r.references().iter().any(|x| x.is_to(key)))
                .map(Record::key)
                .collect())
        }
    }

    impl Memory {
        fn with(records: Vec<Record>) -> Self {
            Memory(records.into_iter().map(|r| (r.key(), r)).collect())
        }
    }

    fn component(id: &str, inputs: &[&str]) -> Record {
        Record::Component(Component {
            id: id.into(),
            inputs: inputs
                .iter()
                .map(|i| ComponentInput {
                    component_id: (*i).into(),
                    quantity: 1.0,
                })
                .collect(),
            ..Default::default()
        })
    }

    fn incoming(records: Vec<Record>) -> Vec<Incoming> {
        records
            .into_iter()
            .enumerate()
            .map(|(i, record)| Incoming {
                origin: Origin::Records(i),
                record,
            })
            .collect()
    }

    fn supplier(id: &str) -> Record {
        Record::Supplier(Supplier {
            id: id.into(),
            ..Default::default()
        })
    }

    #[test]
    fn a_cycle_through_stored_components_is_found_and_named() {
        let store = Memory::with(vec![component("B", &["C"]), component("C", &[])]);
        let err = plan_upsert(
            &store,
            incoming(vec![component("A", &["B"]), component("C", &["A"])]),
            vec![],
            Revisions::Preconditions,
        )
        .unwrap_err();
        let Error::Invalid {
            reason,
            cycle,
            violations,
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(reason, InvalidReason::CycleDetected);
        assert_eq!(cycle, vec!["A", "B", "C", "A"]);
        assert_eq!(
            violations[0].field,
            "records[0].component.inputs[0].component_id"
        );
    }

    #[test]
    fn a_long_cycle_does_not_overflow_the_stack() {
        let n = 100_000;
        let records: Vec<Record> = (0..n)
            .map(|i| {
                let id = format!("C{i:06}");
                let next = format!("C{:06}", (i + 1) % n);
                component(&id, &[next.as_str()])
            })
            .collect();
        let err = plan_upsert(
            &Memory::default(),
            incoming(records),
            vec![],
            Revisions::Preconditions,
        )
        .unwrap_err();
        let Error::Invalid { cycle, .. } = err else {
            panic!()
        };
        assert_eq!(cycle.len(), n + 1);
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        let records = vec![
            component("TOP", &["L", "R"]),
            component("L", &["BOTTOM"]),
            component("R", &["BOTTOM"]),
            component("BOTTOM", &[]),
        ];
        let plan = plan_upsert(
            &Memory::default(),
            incoming(records),
            vec![],
            Revisions::Preconditions,
        )
        .unwrap();
        assert_eq!(plan.len(), 4);
    }

    #[test]
    fn unknown_references_are_listed_with_their_paths() {
        let err = plan_upsert(
            &Memory::default(),
            incoming(vec![
                component("A", &["NOPE"]),
                component("B", &["A", "ALSO-NOPE"]),
            ]),
            vec![],
            Revisions::Preconditions,
        )
        .unwrap_err();
        let Error::Invalid {
            reason, violations, ..
        } = err
        else {
            panic!()
        };
        assert_eq!(reason, InvalidReason::UnknownReference);
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "records[0].component.inputs[0].component_id",
                "records[1].component.inputs[1].component_id"
            ]
        );
    }

    #[test]
    fn malformed_fields_outrank_unknown_references() {
        let mut bad = component("A", &["NOPE"]);
        if let Record::Component(c) = &mut bad {
            c.on_hand_units = -1.0;
        }
        let err = plan_upsert(
            &Memory::default(),
            incoming(vec![bad]),
            vec![],
            Revisions::Preconditions,
        )
        .unwrap_err();
        let Error::Invalid {
            reason, violations, ..
        } = err
        else {
            panic!()
        };
        assert_eq!(reason, InvalidReason::InvalidRecord);
        assert_eq!(
            violations.len(),
            2,
            "both the field and the reference are reported"
        );
    }

    #[test]
    fn the_same_record_twice_is_refused() {
        let err = plan_upsert(
            &Memory::default(),
            incoming(vec![supplier("S"), supplier("S")]),
            vec![],
            Revisions::Preconditions,
        )
        .unwrap_err();
        let Error::Invalid { violations, .. } = err else {
            panic!()
        };
        assert_eq!(violations[0].field, "records[1].supplier.id");
    }

    #[test]
    fn unchanged_records_plan_nothing_and_revisions_are_preconditions() {
        let mut stored = supplier("S");
        stored.set_revision(7);
        let store = Memory::with(vec![stored]);
        assert!(plan_upsert(
            &store,
            incoming(vec![supplier("S")]),
            vec![],
            Revisions::Preconditions
        )
        .unwrap()
        .is_empty());

        let mut stale = supplier("S");
        stale.set_revision(6);
        let err = plan_upsert(
            &store,
            incoming(vec![stale.clone()]),
            vec![],
            Revisions::Preconditions,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            Error::RevisionMismatch {
                expected: 6,
                actual: Some(7),
                ..
            }
        ));
        // An import ignores revisions.
        assert!(plan_upsert(&store, incoming(vec![stale]), vec![], Revisions::Ignored).is_ok());

        let mut absent = supplier("T");
        absent.set_revision(1);
        let err = plan_upsert(
            &store,
            incoming(vec![absent]),
            vec![],
            Revisions::Preconditions,
        )
        .unwrap_err();
        assert!(matches!(err, Error::RevisionMismatch { actual: None, .. }));
    }

    #[test]
    fn delete_refuses_missing_and_still_referenced_records() {
        let licence = Record::License(License {
            id: "L1".into(),
            supplier_id: "S".into(),
            material: "DY".into(),
            status: LicenseStatus::Pending,
            quantity_kg: 1.0,
            ..Default::default()
        });
        let store = Memory::with(vec![supplier("S"), licence]);
        let s = RecordKey::new(Kind::Supplier, "S");
        let l = RecordKey::new(Kind::License, "L1");
        let missing = RecordKey::new(Kind::Supplier, "X");

        let err = plan_delete(&store, &[s.clone(), missing.clone()]).unwrap_err();
        assert!(matches!(err, Error::NotFound { missing: ref m } if *m == vec![missing]));

        let err = plan_delete(&store, std::slice::from_ref(&s)).unwrap_err();
        assert!(
            matches!(err, Error::StillReferenced { ref referrers, .. } if *referrers == vec![l.clone()])
        );

        // Deleting the referrer in the same request is fine.
        assert_eq!(plan_delete(&store, &[s.clone(), l, s]).unwrap().len(), 2);
    }
}
