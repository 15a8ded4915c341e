//! Records from CSV files of the kind ERP systems export: one file per kind,
//! a header row naming the columns (in any order), one row per record or per
//! relation. The file's name says its kind:
//!
//! | file name starts with | one row per | columns (the first ones required) |
//! |---|---|---|
//! | `materials` | material | code, name, controlled_by, controlled_from |
//! | `suppliers` | supplier | id, name, country, tier |
//! | `components` | component | id, name, on_hand_units |
//! | `sources` | supplier of a component | component_id, supplier_id, share |
//! | `contents` | material in a component | component_id, material, grams_per_unit |
//! | `lines` | production line | id, plant, units_per_day, name |
//! | `bom` | bill-of-materials line | parent_id, component_id, quantity |
//! | `licences` or `licenses` | export licence | id, supplier_id, material, status, quantity_kg, used_kg, submitted_on, expected_decision_on, decided_on, valid_from, valid_until |
//!
//! A `bom` row's parent is a production line or a component of the same
//! import (a line's bill of materials, or a component's inputs). Sources,
//! contents and BOM rows attach to records of the same import, since an
//! upsert replaces a record whole. Every problem is reported with its file and
//! line, and nothing is read into records while any remains.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::pb;

/// Where a record, or one part of it, came from: `file:line`.
pub(crate) type Place = String;

/// A record read from a file, with where it and its parts came from.
#[derive(Debug)]
pub(crate) struct Located {
    pub record: pb::Record,
    pub place: Place,
    /// Places of parts, by their path inside the record
    /// (`component.sources[1]`).
    pub parts: HashMap<String, Place>,
}

impl Located {
    /// Where the violation at `path` (inside this record) comes from: the
    /// part that holds it, or, for a violation of a whole list of parts
    /// (`component.sources`: shares that do not sum to 1), the rows of its
    /// parts; else the record's own row.
    pub(crate) fn place_of(&self, path: &str) -> Place {
        // The longest part path that prefixes the violation's path.
        let holder = self
            .parts
            .iter()
            .filter(|(part, _)| {
                path == part.as_str()
                    || path.starts_with(&format!("{part}."))
                    || path.starts_with(&format!("{part}["))
            })
            .max_by_key(|(part, _)| part.len());
        if let Some((_, place)) = holder {
            return place.clone();
        }
        let mut members: Vec<(&String, &Place)> = self
            .parts
            .iter()
            .filter(|(part, _)| part.starts_with(&format!("{path}[")))
            .collect();
        if members.is_empty() {
            return self.place.clone();
        }
        members.sort();
        members
            .into_iter()
            .map(|(_, place)| place.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Materials,
    Suppliers,
    Components,
    Sources,
    Contents,
    Lines,
    Bom,
    Licences,
    Shipments,
}

impl Kind {
    fn of(path: &Path) -> Option<Kind> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        [
            ("materials", Kind::Materials),
            ("suppliers", Kind::Suppliers),
            ("components", Kind::Components),
            ("sources", Kind::Sources),
            ("contents", Kind::Contents),
            ("lines", Kind::Lines),
            ("bom", Kind::Bom),
            ("licences", Kind::Licences),
            ("licenses", Kind::Licences),
            ("shipments", Kind::Shipments),
        ]
        .into_iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, kind)| kind)
    }

    /// (required, optional) columns.
    fn columns(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Kind::Materials => (&["code"], &["name", "controlled_by", "controlled_from"]),
            Kind::Suppliers => (&["id"], &["name", "country", "tier"]),
            Kind::Components => (&["id"], &["name", "on_hand_units"]),
            Kind::Sources => (&["component_id", "supplier_id", "share"], &[]),
            Kind::Contents => (&["component_id", "material", "grams_per_unit"], &[]),
            Kind::Lines => (&["id", "plant", "units_per_day"], &["name"]),
            Kind::Bom => (&["parent_id", "component_id", "quantity"], &[]),
            Kind::Licences => (
                &["id", "supplier_id", "material", "status"],
                &[
                    "quantity_kg",
                    "used_kg",
                    "submitted_on",
                    "expected_decision_on",
                    "decided_on",
                    "valid_from",
                    "valid_until",
                ],
            ),
            // An open purchase order's schedule line, as ERPs export them.
            Kind::Shipments => (
                &["component_id", "units", "arrives_on"],
                &["id", "purchase_order", "item", "schedule_line", "reference"],
            ),
        }
    }
}

/// The file names this reader knows, for messages.
pub(crate) const KINDS: &str =
    "materials, suppliers, components, sources, contents, lines, bom, licences, shipments";

/// One data row: its place and its cells by column.
struct Row {
    place: Place,
    cells: HashMap<&'static str, String>,
}

impl Row {
    fn text(&self, column: &str) -> String {
        self.cells.get(column).cloned().unwrap_or_default()
    }

    fn number(&self, column: &str, problems: &mut Vec<String>) -> f64 {
        let text = self.text(column);
        if text.is_empty() {
            return 0.0;
        }
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => n,
            _ => {
                problems.push(format!(
                    "{}: {column}: {text:?} is not a number",
                    self.place
                ));
                0.0
            }
        }
    }

    /// A date cell, `YYYY-MM-DD` or empty; checked here so that a bad date
    /// is reported with every other problem of the file, not only once the
    /// file's other problems are mended and the server sees it.
    fn date(&self, column: &str, problems: &mut Vec<String>) -> String {
        let text = self.text(column);
        if !text.is_empty() && crate::domain::date::parse_date(&text).is_none() {
            problems.push(format!(
                "{}: {column}: {text:?} is not a date written YYYY-MM-DD",
                self.place
            ));
        }
        text
    }

    fn integer(&self, column: &str, problems: &mut Vec<String>) -> i32 {
        let text = self.text(column);
        if text.is_empty() {
            return 0;
        }
        text.parse::<i32>().unwrap_or_else(|_| {
            problems.push(format!(
                "{}: {column}: {text:?} is not a whole number",
                self.place
            ));
            0
        })
    }
}

/// Reads `path` (a CSV file whose name says its kind) into `rows`.
fn read_rows(path: &Path, kind: Kind, problems: &mut Vec<String>) -> anyhow::Result<Vec<Row>> {
    let name = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_path(path)
        .map_err(|e| anyhow::anyhow!("cannot open {name}: {e}"))?;
    let (required, optional) = kind.columns();
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| anyhow::anyhow!("{name}: cannot read the header row: {e}"))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    // Column names are matched against the static lists, so rows can borrow them.
    let mut columns: Vec<Option<&'static str>> = Vec::with_capacity(header.len());
    for h in &header {
        let known = required.iter().chain(optional).find(|c| **c == h.as_str());
        if known.is_none() {
            problems.push(format!(
                "{name}:1: unknown column {h:?}; a {kind:?} file has {}",
                required
                    .iter()
                    .chain(optional)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        columns.push(known.copied());
    }
    for column in required {
        if !header.iter().any(|h| h == column) {
            problems.push(format!(
                "{name}:1: the required column {column:?} is missing"
            ));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(format!("{name}:{line}: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|cell| cell.is_empty()) {
            continue;
        }
        let cells = columns
            .iter()
            .zip(record.iter())
            .filter_map(|(column, cell)| column.map(|c| (c, cell.to_string())))
            .collect();
        rows.push(Row {
            place: format!("{name}:{line}"),
            cells,
        });
    }
    Ok(rows)
}

fn status(text: &str) -> Option<i32> {
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("LICENSE_STATUS_").unwrap_or(&upper);
    pb::LicenseStatus::from_str_name(&format!("LICENSE_STATUS_{name}"))
        .filter(|s| *s != pb::LicenseStatus::Unspecified)
        .map(|s| s as i32)
}

/// Whether `path` is a CSV file (by its extension).
pub(crate) fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Reads CSV files into records. Problems (with file and line) are pushed to
/// `problems`; the records are only meaningful when it stays empty.
pub(crate) fn read(paths: &[&Path], problems: &mut Vec<String>) -> anyhow::Result<Vec<Located>> {
    let rows = Rows::read(paths, problems)?;
    let mut located = Vec::new();
    for row in rows.of(Kind::Materials) {
        located.push(material(row, problems));
    }
    for row in rows.of(Kind::Suppliers) {
        located.push(supplier(row, problems));
    }
    // Components and lines gather their parts from the relation files.
    let mut assembly = Assembly::new(&rows, problems);
    for row in rows.of(Kind::Sources) {
        assembly.source(row, problems);
    }
    for row in rows.of(Kind::Contents) {
        assembly.content(row, problems);
    }
    for row in rows.of(Kind::Bom) {
        assembly.bom_item(row, problems);
    }
    located.extend(assembly.located());
    for row in rows.of(Kind::Licences) {
        located.push(licence(row, problems));
    }
    for row in rows.of(Kind::Shipments) {
        located.push(shipment(row, problems));
    }
    Ok(located)
}

/// The rows of every file, by kind.
struct Rows(BTreeMap<u8, Vec<Row>>);

impl Rows {
    fn read(paths: &[&Path], problems: &mut Vec<String>) -> anyhow::Result<Rows> {
        let mut by_kind: BTreeMap<u8, Vec<Row>> = BTreeMap::new();
        for path in paths {
            if !path.exists() {
                anyhow::bail!("{}: no such file", path.display());
            }
            let Some(kind) = Kind::of(path) else {
                anyhow::bail!(
                    "{}: the file name must start with the kind of its rows ({KINDS})",
                    path.display()
                );
            };
            let rows = read_rows(path, kind, problems)?;
            by_kind.entry(kind as u8).or_default().extend(rows);
        }
        Ok(Rows(by_kind))
    }

    fn of(&self, kind: Kind) -> &[Row] {
        self.0.get(&(kind as u8)).map_or(&[], Vec::as_slice)
    }
}

fn material(row: &Row, problems: &mut Vec<String>) -> Located {
    whole(
        pb::record::Record::Material(pb::Material {
            code: row.text("code"),
            name: row.text("name"),
            controlled_by: row.text("controlled_by"),
            controlled_from: row.date("controlled_from", problems),
            revision: 0,
        }),
        row,
    )
}

fn supplier(row: &Row, problems: &mut Vec<String>) -> Located {
    let tier = row.integer("tier", problems);
    whole(
        pb::record::Record::Supplier(pb::Supplier {
            id: row.text("id"),
            name: row.text("name"),
            country: row.text("country"),
            tier,
            revision: 0,
        }),
        row,
    )
}

fn licence(row: &Row, problems: &mut Vec<String>) -> Located {
    let status = match status(&row.text("status")) {
        Some(status) => status,
        None => {
            problems.push(format!(
                "{}: status: {:?} is not PENDING, APPROVED, REJECTED or REVOKED",
                row.place,
                row.text("status")
            ));
            0
        }
    };
    let quantity_kg = row.number("quantity_kg", problems);
    let used_kg = row.number("used_kg", problems);
    whole(
        pb::record::Record::License(pb::License {
            id: row.text("id"),
            supplier_id: row.text("supplier_id"),
            material: row.text("material"),
            status,
            quantity_kg,
            used_kg,
            submitted_on: row.date("submitted_on", problems),
            expected_decision_on: row.date("expected_decision_on", problems),
            decided_on: row.date("decided_on", problems),
            valid_from: row.date("valid_from", problems),
            valid_until: row.date("valid_until", problems),
            revision: 0,
        }),
        row,
    )
}

/// A schedule line: its id is `id`, or the purchase order and item (and
/// the schedule line, when given); its reference says the order when the
/// row gives none.
fn shipment(row: &Row, problems: &mut Vec<String>) -> Located {
    let units = row.number("units", problems);
    let (order, item, schedule) = (
        row.text("purchase_order"),
        row.text("item"),
        row.text("schedule_line"),
    );
    let id = match (row.text("id"), order.is_empty() || item.is_empty()) {
        (id, _) if !id.is_empty() => id,
        (_, false) if schedule.is_empty() => format!("{order}-{item}"),
        (_, false) => format!("{order}-{item}-{schedule}"),
        (_, true) => {
            problems.push(format!(
                "{}: id: empty; give an id, or the purchase_order and item",
                row.place
            ));
            String::new()
        }
    };
    let reference = match row.text("reference") {
        r if !r.is_empty() => r,
        _ if !order.is_empty() => format!("PO {order}/{item}"),
        _ => String::new(),
    };
    if row.text("arrives_on").is_empty() {
        problems.push(format!(
            "{}: arrives_on: empty; a shipment arrives on a day (YYYY-MM-DD)",
            row.place
        ));
    }
    whole(
        pb::record::Record::Shipment(pb::Shipment {
            id,
            component_id: row.text("component_id"),
            units,
            arrives_on: row.date("arrives_on", problems),
            reference,
            revision: 0,
        }),
        row,
    )
}

/// A record being put together from its own row and the rows of its
/// parts, with where each part came from.
type Assembled<'r, T> = (T, &'r Row, HashMap<String, Place>);

/// Components and lines, as their relation rows add their parts.
struct Assembly<'r> {
    components: Vec<Assembled<'r, pb::Component>>,
    component_at: HashMap<String, usize>,
    lines: Vec<Assembled<'r, pb::ProductionLine>>,
    line_at: HashMap<String, usize>,
}

impl<'r> Assembly<'r> {
    fn new(rows: &'r Rows, problems: &mut Vec<String>) -> Assembly<'r> {
        let mut assembly = Assembly {
            components: Vec::new(),
            component_at: HashMap::new(),
            lines: Vec::new(),
            line_at: HashMap::new(),
        };
        for row in rows.of(Kind::Components) {
            let on_hand_units = row.number("on_hand_units", problems);
            let component = pb::Component {
                id: row.text("id"),
                name: row.text("name"),
                on_hand_units,
                ..Default::default()
            };
            let at = assembly.components.len();
            assembly.component_at.insert(row.text("id"), at);
            assembly.components.push((component, row, HashMap::new()));
        }
        for row in rows.of(Kind::Lines) {
            let units_per_day = row.number("units_per_day", problems);
            let line = pb::ProductionLine {
                id: row.text("id"),
                name: row.text("name"),
                plant: row.text("plant"),
                units_per_day,
                ..Default::default()
            };
            assembly
                .line_at
                .insert(row.text("id"), assembly.lines.len());
            assembly.lines.push((line, row, HashMap::new()));
        }
        assembly
    }

    /// The component that `column` of `row` names, which must be one of
    /// this import.
    fn component_of(
        &mut self,
        row: &Row,
        column: &str,
        problems: &mut Vec<String>,
    ) -> Option<&mut Assembled<'r, pb::Component>> {
        let id = row.text(column);
        match self.component_at.get(&id) {
            Some(&c) => Some(&mut self.components[c]),
            None => {
                problems.push(format!(
                    "{}: {column}: component {id:?} is not in a components file of this import",
                    row.place
                ));
                None
            }
        }
    }

    fn source(&mut self, row: &Row, problems: &mut Vec<String>) {
        let share = row.number("share", problems);
        if let Some((component, _, parts)) = self.component_of(row, "component_id", problems) {
            parts.insert(
                format!("component.sources[{}]", component.sources.len()),
                row.place.clone(),
            );
            component.sources.push(pb::Source {
                supplier_id: row.text("supplier_id"),
                share,
            });
        }
    }

    fn content(&mut self, row: &Row, problems: &mut Vec<String>) {
        let grams_per_unit = row.number("grams_per_unit", problems);
        if let Some((component, _, parts)) = self.component_of(row, "component_id", problems) {
            parts.insert(
                format!("component.materials[{}]", component.materials.len()),
                row.place.clone(),
            );
            component.materials.push(pb::MaterialContent {
                material: row.text("material"),
                grams_per_unit,
            });
        }
    }

    /// A BOM row: a line's part, or a component's input.
    fn bom_item(&mut self, row: &Row, problems: &mut Vec<String>) {
        let quantity = row.number("quantity", problems);
        let parent = row.text("parent_id");
        let component_id = row.text("component_id");
        match (self.line_at.get(&parent), self.component_at.get(&parent)) {
            (Some(_), Some(_)) => problems.push(format!(
                "{}: parent_id: {parent:?} names both a line and a component",
                row.place
            )),
            (Some(&l), None) => {
                let (line, _, parts) = &mut self.lines[l];
                parts.insert(format!("line.bom[{}]", line.bom.len()), row.place.clone());
                line.bom.push(pb::BomItem {
                    component_id,
                    quantity,
                });
            }
            (None, Some(&c)) => {
                let (component, _, parts) = &mut self.components[c];
                parts.insert(
                    format!("component.inputs[{}]", component.inputs.len()),
                    row.place.clone(),
                );
                component.inputs.push(pb::ComponentInput {
                    component_id,
                    quantity,
                });
            }
            (None, None) => problems.push(format!(
                "{}: parent_id: {parent:?} is neither a line nor a component of this import",
                row.place
            )),
        }
    }

    /// The components, then the lines, with their parts' places.
    fn located(self) -> impl Iterator<Item = Located> + 'r {
        let components = self.components.into_iter().map(|(component, row, parts)| {
            let mut l = whole(pb::record::Record::Component(component), row);
            l.parts = parts;
            l
        });
        let lines = self.lines.into_iter().map(|(line, row, parts)| {
            let mut l = whole(pb::record::Record::Line(line), row);
            l.parts = parts;
            l
        });
        components.chain(lines)
    }
}

fn whole(record: pb::record::Record, row: &Row) -> Located {
    Located {
        record: pb::Record {
            record: Some(record),
        },
        place: row.place.clone(),
        parts: HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn schedule_lines_become_shipments_and_every_problem_of_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "shipments-open-orders.csv",
            "purchase_order,item,schedule_line,component_id,units,arrives_on\n\
             4500000001,10,2,MAG,300,2025-06-20\n\
             ,,,MAG,many,2025-06-20\n\
             4500000002,20,,MAG,5,\n\
             4500000003,10,,MAG,5,20.6.2025\n",
        );
        let mut problems = Vec::new();
        let located = read(&[file.as_path()], &mut problems).unwrap();
        let Some(pb::record::Record::Shipment(first)) = &located[0].record.record else {
            panic!("{located:?}");
        };
        assert_eq!(first.id, "4500000001-10-2");
        assert_eq!(first.reference, "PO 4500000001/10");
        assert_eq!(
            (first.units, first.arrives_on.as_str()),
            (300.0, "2025-06-20")
        );
        let ends = |line: usize, text: &str| {
            problems.iter().any(|p| {
                p.contains(&format!("shipments-open-orders.csv:{line}:")) && p.contains(text)
            })
        };
        assert!(ends(3, "id: empty"), "{problems:?}");
        assert!(ends(3, "units: \"many\" is not a number"), "{problems:?}");
        assert!(ends(4, "arrives_on: empty"), "{problems:?}");
        assert!(
            ends(5, "arrives_on: \"20.6.2025\" is not a date"),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn rows_gather_into_records_and_parts_keep_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let files = [
            write(
                d,
                "components.csv",
                "id,name,on_hand_units\nMOTOR,Motor,50\nMAG,Magnet,100\n",
            ),
            write(
                d,
                "sources.csv",
                "component_id,supplier_id,share\nMAG,S1,0.6\nMAG,S2,0.4\n",
            ),
            write(
                d,
                "contents.csv",
                "grams_per_unit,material,component_id\n30,DY,MAG\n",
            ),
            write(d, "lines.csv", "id,plant,units_per_day\nL1,P,10\n"),
            write(
                d,
                "bom.csv",
                "parent_id,component_id,quantity\nL1,MOTOR,1\nMOTOR,MAG,2\n",
            ),
            write(
                d,
                "licences.csv",
                "id,supplier_id,material,status,quantity_kg\nLIC,S1,DY,pending,50\n",
            ),
        ];
        let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
        let mut problems = Vec::new();
        let located = read(&paths, &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(located.len(), 4);
        let mag = located
            .iter()
            .find_map(|l| match &l.record.record {
                Some(pb::record::Record::Component(c)) if c.id == "MAG" => Some((c, l)),
                _ => None,
            })
            .unwrap();
        assert_eq!(mag.0.sources.len(), 2);
        assert_eq!(mag.0.materials[0].grams_per_unit, 30.0);
        assert!(mag.1.place.ends_with("components.csv:3"));
        assert!(mag
            .1
            .place_of("component.sources[1].share")
            .as_str()
            .ends_with("sources.csv:3"));
        assert!(mag.1.place_of("component.id").ends_with("components.csv:3"));
        let motor_inputs = located.iter().find_map(|l| match &l.record.record {
            Some(pb::record::Record::Component(c)) if c.id == "MOTOR" => Some(c.inputs.clone()),
            _ => None,
        });
        assert_eq!(motor_inputs.unwrap()[0].quantity, 2.0);
        let licence = located.last().unwrap();
        match &licence.record.record {
            Some(pb::record::Record::License(l)) => {
                assert_eq!(l.status, pb::LicenseStatus::Pending as i32)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let files = [
            write(d, "components.csv", "id,colour\nA,red\n"),
            write(
                d,
                "sources.csv",
                "component_id,supplier_id,share\nB,S1,half\n",
            ),
            write(
                d,
                "licences.csv",
                "id,supplier_id,material,status,decided_on,valid_from\n\
                 L,S,DY,maybe,2025-6-2,2025-06-31\n",
            ),
            write(d, "bom.csv", "parent_id,component_id,quantity\nNOPE,A,1\n"),
        ];
        let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
        let mut problems = Vec::new();
        read(&paths, &mut problems).unwrap();
        let all = problems.join("\n");
        assert!(
            all.contains("components.csv:1: unknown column \"colour\""),
            "{all}"
        );
        assert!(
            all.contains("sources.csv:2: share: \"half\" is not a number"),
            "{all}"
        );
        assert!(
            all.contains("sources.csv:2: component_id: component \"B\""),
            "{all}"
        );
        // The bad status hides neither bad date of the same row.
        assert!(all.contains("licences.csv:2: status: \"maybe\""), "{all}");
        assert!(
            all.contains("licences.csv:2: decided_on: \"2025-6-2\" is not a date"),
            "{all}"
        );
        assert!(
            all.contains("licences.csv:2: valid_from: \"2025-06-31\" is not a date"),
            "{all}"
        );
        assert!(all.contains("bom.csv:2: parent_id: \"NOPE\""), "{all}");
        assert_eq!(problems.len(), 7, "{all}");

        let unnamed = write(d, "erp-export.csv", "id\nX\n");
        let error = read(&[unnamed.as_path()], &mut Vec::new()).unwrap_err();
        assert!(
            format!("{error}").contains("must start with the kind"),
            "{error}"
        );
        let missing = d.join("licences-june.csv");
        let error = read(&[missing.as_path()], &mut Vec::new()).unwrap_err();
        assert_eq!(
            format!("{error}"),
            format!("{}: no such file", missing.display())
        );
    }

    #[test]
    fn a_violation_of_a_whole_list_is_placed_at_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let files = [
            write(d, "components.csv", "id\nA\n"),
            write(
                d,
                "sources.csv",
                "component_id,supplier_id,share\nA,S1,0.5\nA,S2,0.4\n",
            ),
        ];
        let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
        let located = read(&paths, &mut Vec::new()).unwrap();
        let a = &located[0];
        let sources = d.join("sources.csv").display().to_string();
        assert_eq!(
            a.place_of("component.sources"),
            format!("{sources}:2, {sources}:3")
        );
        assert!(a.place_of("component.id").ends_with("components.csv:2"));
    }
}
