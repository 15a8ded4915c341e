//! The parts of the model that depend only on the network's shape: the
//! components in topological order, their daily demand, and the licence
//! pools with their daily requirements. None of it depends on licences, dates
//! or scenarios, so one `Structure` serves every query until a material,
//! supplier, component or line changes.
//!
//! Components, lines and pools are numbered in identifier order, so that a
//! smaller index is a smaller id: "ties go to the smallest id" is "ties go to
//! the smallest index" throughout the simulation.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::day_number;
use crate::domain::record::{Component, License, Material, ProductionLine, Supplier};

/// The supplier index of a source whose supplier the network lacks.
pub const NO_SUPPLIER: u32 = u32::MAX;

/// One supplier's part of a component, with the pools it needs.
#[derive(Clone, Debug)]
pub struct SourceNode {
    /// The supplier, by index (= by id); [`NO_SUPPLIER`] when the network
    /// has no such supplier.
    pub supplier: u32,
    /// The share divided by the sum of the component's shares.
    pub share: f64,
    /// The pools (this supplier, m) for the materials of the component that
    /// this supplier needs a licence for, in pool order.
    pub pools: Vec<u32>,
}

#[derive(Clone, Debug)]
pub struct ComponentNode {
    pub id: String,
    /// By supplier id. Empty: made in-house.
    pub sources: Vec<SourceNode>,
    /// Input components, by index (= by id).
    pub inputs: Vec<u32>,
    /// Materials with their grams per unit (for the material scope).
    pub materials: Vec<(String, f64)>,
    /// Supplier ids of the sources (for the supplier scope).
    pub suppliers: Vec<String>,
    /// Every pool of the component, in pool order.
    pub pools: Vec<u32>,
    pub on_hand_units: f64,
}

#[derive(Clone, Debug)]
pub struct LineNode {
    pub id: String,
    pub plant: String,
    pub units_per_day: f64,
    /// Taken off by the scenario: no demand, builds nothing.
    pub idled: bool,
    /// BOM components, by index (= by id).
    pub bom: Vec<u32>,
}

#[derive(Clone, Debug)]
pub struct PoolNode {
    /// The supplier, by index.
    pub supplier: u32,
    pub supplier_id: String,
    pub material: String,
    /// R(s, m): kilograms per day the network needs from this pool.
    pub required_kg_per_day: f64,
    /// First controlled day number; `i32::MIN` when controlled every day.
    pub controlled_from: i32,
}

/// The network's shape, ready for simulation.
#[derive(Clone, Debug, Default)]
pub struct Structure {
    pub components: Vec<ComponentNode>,
    pub lines: Vec<LineNode>,
    pub pools: Vec<PoolNode>,
    /// D(c): gross daily demand of each component.
    pub demand: Vec<f64>,
    pub component_index: HashMap<String, u32>,
    pub line_index: HashMap<String, u32>,
    /// (supplier id, material code) → pool index.
    pub pool_index: HashMap<(String, String), u32>,
    pub suppliers: HashSet<String>,
    pub materials: HashSet<String>,
    /// Every supplier of the network, by index (= in id order), with its
    /// country.
    pub supplier_ids: Vec<String>,
    pub supplier_countries: Vec<String>,
    pub supplier_index: HashMap<String, u32>,
    /// The same graph laid out flat for the simulation's inner loop.
    pub flat: Flat,
    /// comps(L) of each line: every component reachable from its BOM, by index.
    pub line_components: Vec<Vec<u32>>,
    /// The components each supplier is a source of.
    pub components_by_supplier: HashMap<String, Vec<u32>>,
    /// The components that contain each material (more than 0 g).
    pub components_by_material: HashMap<String, Vec<u32>>,
}

/// The component graph laid out for the simulation's inner loop, which
/// visits every component every day: positions follow the topological order
/// (so the loop walks memory front to back and every input sits at an
/// earlier position), and lists are compressed sparse rows.
#[derive(Clone, Debug, Default)]
pub struct Flat {
    /// The component at each position.
    pub component: Vec<u32>,
    /// The position of each component.
    pub position: Vec<u32>,
    /// Whether the component at a position can ever fall short: it has a
    /// pool, or an input that can. The others always have everything.
    pub exposed: Vec<bool>,
    pub demand: Vec<f64>,
    pub on_hand_units: Vec<f64>,
    /// Sources at position k: `source_share[source_start[k]..source_start[k + 1]]`.
    pub source_start: Vec<u32>,
    pub source_share: Vec<f64>,
    /// Pools of source s: `source_pools[pool_start[s]..pool_start[s + 1]]`.
    pub pool_start: Vec<u32>,
    pub source_pools: Vec<u32>,
    /// The supplier of source s.
    pub source_supplier: Vec<u32>,
    /// Input positions at position k: `inputs[input_start[k]..input_start[k + 1]]`.
    pub input_start: Vec<u32>,
    pub inputs: Vec<u32>,
    /// BOM positions of line l: `bom[bom_start[l]..bom_start[l + 1]]`.
    pub bom_start: Vec<u32>,
    pub bom: Vec<u32>,
    /// Positions of the components that use the one at position k as an
    /// input: `users[user_start[k]..user_start[k + 1]]`.
    pub user_start: Vec<u32>,
    pub users: Vec<u32>,
    /// Lines whose BOM holds the component at position k:
    /// `bom_lines[bom_line_start[k]..bom_line_start[k + 1]]`.
    pub bom_line_start: Vec<u32>,
    pub bom_lines: Vec<u32>,
    /// Positions of the components with a source that needs pool p:
    /// `pool_users[pool_user_start[p]..pool_user_start[p + 1]]`.
    pub pool_user_start: Vec<u32>,
    pub pool_users: Vec<u32>,
}

impl Flat {
    fn new(
        components: &[ComponentNode],
        lines: &[LineNode],
        order: &[u32],
        demand: &[f64],
    ) -> Flat {
        let mut position = vec![0u32; components.len()];
        for (k, &c) in order.iter().enumerate() {
            position[c as usize] = k as u32;
        }
        let mut flat = Flat {
            component: order.to_vec(),
            ..Flat::default()
        };
        for &c in order {
            let node = &components[c as usize];
            flat.source_start.push(flat.source_share.len() as u32);
            for source in &node.sources {
                flat.source_share.push(source.share);
                flat.source_supplier.push(source.supplier);
                flat.pool_start.push(flat.source_pools.len() as u32);
                flat.source_pools.extend_from_slice(&source.pools);
            }
            flat.input_start.push(flat.inputs.len() as u32);
            flat.inputs
                .extend(node.inputs.iter().map(|&i| position[i as usize]));
            let exposed = !node.pools.is_empty()
                || node
                    .inputs
                    .iter()
                    .any(|&i| flat.exposed[position[i as usize] as usize]);
            flat.exposed.push(exposed);
            flat.demand.push(demand[c as usize]);
            flat.on_hand_units.push(node.on_hand_units);
        }
        flat.source_start.push(flat.source_share.len() as u32);
        flat.pool_start.push(flat.source_pools.len() as u32);
        flat.input_start.push(flat.inputs.len() as u32);
        for l in lines {
            flat.bom_start.push(flat.bom.len() as u32);
            flat.bom.extend(l.bom.iter().map(|&c| position[c as usize]));
        }
        flat.bom_start.push(flat.bom.len() as u32);
        let n = components.len();
        let (user_start, users) = compressed(n, |push| {
            for k in 0..n {
                for &i in
                    &flat.inputs[flat.input_start[k] as usize..flat.input_start[k + 1] as usize]
                {
                    push(i, k as u32);
                }
            }
        });
        let (bom_line_start, bom_lines) = compressed(n, |push| {
            for l in 0..lines.len() {
                for &k in &flat.bom[flat.bom_start[l] as usize..flat.bom_start[l + 1] as usize] {
                    push(k, l as u32);
                }
            }
        });
        let pool_count = components
            .iter()
            .flat_map(|c| c.pools.iter())
            .map(|&p| p as usize + 1)
            .max()
            .unwrap_or(0);
        let (pool_user_start, pool_users) = compressed(pool_count, |push| {
            for (k, &c) in order.iter().enumerate() {
                for &p in &components[c as usize].pools {
                    push(p, k as u32);
                }
            }
        });
        flat.pool_user_start = pool_user_start;
        flat.pool_users = pool_users;
        flat.user_start = user_start;
        flat.users = users;
        flat.bom_line_start = bom_line_start;
        flat.bom_lines = bom_lines;
        flat.position = position;
        flat
    }

    /// Range of the sources of the component at position k.
    pub fn sources(&self, k: usize) -> std::ops::Range<usize> {
        self.source_start[k] as usize..self.source_start[k + 1] as usize
    }

    /// The pools of source s.
    pub fn pools_of_source(&self, s: usize) -> &[u32] {
        &self.source_pools[self.pool_start[s] as usize..self.pool_start[s + 1] as usize]
    }

    /// The input positions of the component at position k.
    pub fn inputs_of(&self, k: usize) -> &[u32] {
        &self.inputs[self.input_start[k] as usize..self.input_start[k + 1] as usize]
    }

    /// The BOM positions of line l.
    pub fn bom_of(&self, l: usize) -> &[u32] {
        &self.bom[self.bom_start[l] as usize..self.bom_start[l + 1] as usize]
    }

    /// The positions using the component at position k.
    pub fn users_of(&self, k: usize) -> &[u32] {
        &self.users[self.user_start[k] as usize..self.user_start[k + 1] as usize]
    }

    /// The positions of the components with a source that needs pool p.
    pub fn users_of_pool(&self, p: usize) -> &[u32] {
        self.pool_user_start.get(p + 1).map_or(&[][..], |&end| {
            &self.pool_users[self.pool_user_start[p] as usize..end as usize]
        })
    }

    /// The lines with the component at position k in their BOM.
    pub fn lines_of(&self, k: usize) -> &[u32] {
        &self.bom_lines[self.bom_line_start[k] as usize..self.bom_line_start[k + 1] as usize]
    }
}

/// A compressed-sparse-rows list over `rows` rows from (row, value) pairs
/// that `fill` pushes in any row order; each row keeps its values in push
/// order.
fn compressed(rows: usize, fill: impl Fn(&mut dyn FnMut(u32, u32))) -> (Vec<u32>, Vec<u32>) {
    let mut start = vec![0u32; rows + 1];
    fill(&mut |row, _| start[row as usize + 1] += 1);
    for r in 0..rows {
        start[r + 1] += start[r];
    }
    let mut next = start.clone();
    let mut values = vec![0u32; start[rows] as usize];
    fill(&mut |row, value| {
        values[next[row as usize] as usize] = value;
        next[row as usize] += 1;
    });
    (start, values)
}

impl Structure {
    pub fn build<'a>(
        materials: impl IntoIterator<Item = &'a Material>,
        suppliers: impl IntoIterator<Item = &'a Supplier>,
        components: impl IntoIterator<Item = &'a Component>,
        lines: impl IntoIterator<Item = &'a ProductionLine>,
    ) -> Structure {
        Structure::build_with(materials, suppliers, components, lines, &[])
    }

    /// [`Structure::build`] with the lines a scenario idles, whose demand
    /// is gone.
    pub fn build_with<'a>(
        materials: impl IntoIterator<Item = &'a Material>,
        suppliers: impl IntoIterator<Item = &'a Supplier>,
        components: impl IntoIterator<Item = &'a Component>,
        lines: impl IntoIterator<Item = &'a ProductionLine>,
        idled: &[String],
    ) -> Structure {
        let materials: HashMap<&str, &Material> = materials
            .into_iter()
            .map(|m| (m.code.as_str(), m))
            .collect();
        let countries: HashMap<&str, &str> = suppliers
            .into_iter()
            .map(|s| (s.id.as_str(), s.country.as_str()))
            .collect();
        let mut supplier_ids: Vec<&str> = countries.keys().copied().collect();
        supplier_ids.sort_unstable();
        let supplier_index: HashMap<String, u32> = supplier_ids
            .iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), i as u32))
            .collect();
        let mut components: Vec<&Component> = components.into_iter().collect();
        components.sort_by(|a, b| a.id.cmp(&b.id));
        let mut lines: Vec<&ProductionLine> = lines.into_iter().collect();
        lines.sort_by(|a, b| a.id.cmp(&b.id));
        let component_index: HashMap<String, u32> = components
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i as u32))
            .collect();

        let inputs = inputs_by_index(&components, &component_index);
        let topological = topological_order(&inputs);
        let idled: HashSet<&str> = idled.iter().map(String::as_str).collect();
        let line_nodes = line_nodes(&lines, &component_index, &idled);
        let working: Vec<&ProductionLine> = lines
            .iter()
            .copied()
            .filter(|l| !idled.contains(l.id.as_str()))
            .collect();
        let demand = gross_demand(&working, &inputs, &topological, &component_index);

        let licensing = Licensing {
            materials: &materials,
            countries: &countries,
            supplier_index: &supplier_index,
        };
        let (pools, shares) = licensing.pools(&components, &demand);
        let pool_index: HashMap<(String, String), u32> = pools
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.supplier_id.clone(), p.material.clone()), i as u32))
            .collect();
        let component_nodes: Vec<ComponentNode> = components
            .iter()
            .zip(shares)
            .zip(inputs)
            .map(|((component, shares), inputs)| {
                licensing.component_node(component, shares, inputs, &pool_index)
            })
            .collect();
        let (components_by_supplier, components_by_material) = scope_indexes(&component_nodes);
        let mut walk = Walk::new(component_nodes.len());
        let line_components = line_nodes
            .iter()
            .map(|l| walk.reachable(&component_nodes, l.bom.iter().copied()))
            .collect();
        Structure {
            line_components,
            components_by_supplier,
            components_by_material,
            flat: Flat::new(&component_nodes, &line_nodes, &topological, &demand),
            line_index: line_nodes
                .iter()
                .enumerate()
                .map(|(i, l)| (l.id.clone(), i as u32))
                .collect(),
            components: component_nodes,
            lines: line_nodes,
            pools,
            demand,
            component_index,
            pool_index,
            suppliers: countries.keys().map(|s| s.to_string()).collect(),
            supplier_countries: supplier_ids
                .iter()
                .map(|s| countries[s].to_string())
                .collect(),
            supplier_ids: supplier_ids.iter().map(|s| s.to_string()).collect(),
            supplier_index,
            materials: materials.keys().map(|m| m.to_string()).collect(),
        }
    }

    /// The pool a licence record belongs to, if it is one of a pool.
    pub fn pool_of(&self, license: &License) -> Option<usize> {
        self.pool(&license.supplier_id, &license.material)
    }

    /// The pool (supplier, material), if there is one.
    pub fn pool(&self, supplier_id: &str, material: &str) -> Option<usize> {
        let &s = self.supplier_index.get(supplier_id)?;
        self.pools_of_supplier(s)
            .find(|&p| self.pools[p].material == material)
    }

    /// The pools of supplier `s` (by index): pools are in (supplier id,
    /// material) order, so they are one run.
    pub fn pools_of_supplier(&self, s: u32) -> std::ops::Range<usize> {
        let first = self.pools.partition_point(|p| p.supplier < s);
        let end = self.pools.partition_point(|p| p.supplier <= s);
        first..end
    }

    /// The components supplier `s` (by index) is a source of, by index.
    pub fn sourced_by(&self, s: u32) -> &[u32] {
        self.supplier_ids
            .get(s as usize)
            .and_then(|id| self.components_by_supplier.get(id))
            .map_or(&[][..], Vec::as_slice)
    }

    /// Every component reachable from `start` through inputs, `start`
    /// included, in index order.
    pub fn reachable(&self, start: impl IntoIterator<Item = u32>) -> Vec<u32> {
        Walk::new(self.components.len()).reachable(&self.components, start)
    }
}

/// Walks of the input graph that share one visited-marker array: a marker
/// holds the number of the walk that last saw the component, so a new walk
/// needs no clearing.
struct Walk {
    seen: Vec<u32>,
    walk: u32,
    stack: Vec<u32>,
}

impl Walk {
    fn new(components: usize) -> Walk {
        Walk {
            seen: vec![0; components],
            walk: 0,
            stack: Vec::new(),
        }
    }

    fn reachable(
        &mut self,
        components: &[ComponentNode],
        start: impl IntoIterator<Item = u32>,
    ) -> Vec<u32> {
        self.walk += 1;
        self.stack.extend(start);
        let mut out = Vec::new();
        while let Some(c) = self.stack.pop() {
            if std::mem::replace(&mut self.seen[c as usize], self.walk) == self.walk {
                continue;
            }
            out.push(c);
            self.stack
                .extend(components[c as usize].inputs.iter().copied());
        }
        out.sort_unstable();
        out
    }
}
/// Each component's inputs with their quantities, by index, in index order.
fn inputs_by_index(
    components: &[&Component],
    component_index: &HashMap<String, u32>,
) -> Vec<Vec<(u32, f64)>> {
    components
        .iter()
        .map(|c| {
            let mut v: Vec<(u32, f64)> = c
                .inputs
                .iter()
                .filter_map(|i| {
                    let x = component_index.get(&i.component_id)?;
                    Some((*x, i.quantity))
                })
                .collect();
            v.sort_by_key(|(x, _)| *x);
            v
        })
        .collect()
}

fn line_nodes(
    lines: &[&ProductionLine],
    component_index: &HashMap<String, u32>,
    idled: &HashSet<&str>,
) -> Vec<LineNode> {
    lines
        .iter()
        .map(|l| {
            let mut bom: Vec<u32> = l
                .bom
                .iter()
                .filter_map(|b| component_index.get(&b.component_id).copied())
                .collect();
            bom.sort_unstable();
            LineNode {
                id: l.id.clone(),
                plant: l.plant.clone(),
                units_per_day: l.units_per_day,
                idled: idled.contains(l.id.as_str()),
                bom,
            }
        })
        .collect()
}

/// D(c): demand flows from lines down through the BOMs, users before
/// inputs.
fn gross_demand(
    lines: &[&ProductionLine],
    inputs: &[Vec<(u32, f64)>],
    topological: &[u32],
    component_index: &HashMap<String, u32>,
) -> Vec<f64> {
    let mut demand = vec![0.0; inputs.len()];
    for line in lines {
        for item in &line.bom {
            if let Some(&c) = component_index.get(&item.component_id) {
                demand[c as usize] += line.units_per_day * item.quantity;
            }
        }
    }
    for &c in topological.iter().rev() {
        let d = demand[c as usize];
        for &(input, quantity) in &inputs[c as usize] {
            demand[input as usize] += d * quantity;
        }
    }
    demand
}

/// A component's sources: supplier id and normalised share, by id.
type Shares<'c> = Vec<(&'c str, f64)>;

/// Who needs a licence for what: the materials, the suppliers' countries.
struct Licensing<'a> {
    materials: &'a HashMap<&'a str, &'a Material>,
    countries: &'a HashMap<&'a str, &'a str>,
    supplier_index: &'a HashMap<String, u32>,
}

impl<'a> Licensing<'a> {
    fn supplier_of(&self, id: &str) -> u32 {
        self.supplier_index.get(id).copied().unwrap_or(NO_SUPPLIER)
    }

    /// Pools: a source in the country that controls a material the
    /// component contains needs a licence for it. With each component's
    /// normalised shares, by supplier id.
    fn pools<'c>(
        &self,
        components: &[&'c Component],
        demand: &[f64],
    ) -> (Vec<PoolNode>, Vec<Shares<'c>>) {
        let mut pool_requirements: BTreeMap<(String, String), f64> = BTreeMap::new();
        let mut shares: Vec<Vec<(&str, f64)>> = Vec::with_capacity(components.len());
        for (c, component) in components.iter().enumerate() {
            let total: f64 = component.sources.iter().map(|s| s.share).sum();
            let mut normalised: Vec<(&str, f64)> = component
                .sources
                .iter()
                .map(|s| (s.supplier_id.as_str(), s.share / total))
                .collect();
            normalised.sort_by(|a, b| a.0.cmp(b.0));
            for &(supplier, share) in &normalised {
                for content in &component.materials {
                    if needs_licence(self.materials, self.countries, supplier, &content.material)
                        && content.grams_per_unit > 0.0
                    {
                        *pool_requirements
                            .entry((supplier.to_string(), content.material.clone()))
                            .or_default() += share * demand[c] * content.grams_per_unit / 1000.0;
                    }
                }
            }
            shares.push(normalised);
        }
        let pools = pool_requirements
            .into_iter()
            .map(|((supplier_id, material), required)| PoolNode {
                supplier: self.supplier_of(&supplier_id),
                controlled_from: self
                    .materials
                    .get(material.as_str())
                    .and_then(|m| m.controlled_from)
                    .map_or(i32::MIN, day_number),
                supplier_id,
                material,
                required_kg_per_day: required,
            })
            .collect();
        (pools, shares)
    }

    fn component_node(
        &self,
        component: &Component,
        shares: Vec<(&str, f64)>,
        inputs: Vec<(u32, f64)>,
        pool_index: &HashMap<(String, String), u32>,
    ) -> ComponentNode {
        let sources: Vec<SourceNode> = shares
            .iter()
            .map(|&(supplier, share)| {
                let mut pools: Vec<u32> = component
                    .materials
                    .iter()
                    .filter(|m| m.grams_per_unit > 0.0)
                    .filter_map(|m| {
                        pool_index
                            .get(&(supplier.to_string(), m.material.clone()))
                            .copied()
                    })
                    .collect();
                pools.sort_unstable();
                pools.dedup();
                SourceNode {
                    supplier: self.supplier_of(supplier),
                    share,
                    pools,
                }
            })
            .collect();
        let mut all_pools: Vec<u32> = sources.iter().flat_map(|s| s.pools.clone()).collect();
        all_pools.sort_unstable();
        all_pools.dedup();
        ComponentNode {
            id: component.id.clone(),
            suppliers: shares.iter().map(|(s, _)| s.to_string()).collect(),
            sources,
            inputs: inputs.into_iter().map(|(i, _)| i).collect(),
            materials: component
                .materials
                .iter()
                .map(|m| (m.material.clone(), m.grams_per_unit))
                .collect(),
            pools: all_pools,
            on_hand_units: component.on_hand_units,
        }
    }
}

/// The components each supplier is a source of, and those that contain
/// each material: what the supplier and material scopes reach.
#[allow(clippy::type_complexity)]
fn scope_indexes(
    nodes: &[ComponentNode],
) -> (HashMap<String, Vec<u32>>, HashMap<String, Vec<u32>>) {
    let mut by_supplier: HashMap<String, Vec<u32>> = HashMap::new();
    let mut by_material: HashMap<String, Vec<u32>> = HashMap::new();
    for (c, node) in nodes.iter().enumerate() {
        for supplier in &node.suppliers {
            by_supplier
                .entry(supplier.clone())
                .or_default()
                .push(c as u32);
        }
        for (material, grams) in &node.materials {
            if *grams > 0.0 {
                by_material
                    .entry(material.clone())
                    .or_default()
                    .push(c as u32);
            }
        }
    }
    (by_supplier, by_material)
}

/// Whether `supplier` needs a licence to ship `material`: the material is
/// export-controlled by the supplier's country.
fn needs_licence(
    materials: &HashMap<&str, &Material>,
    countries: &HashMap<&str, &str>,
    supplier: &str,
    material: &str,
) -> bool {
    match (materials.get(material), countries.get(supplier)) {
        (Some(m), Some(country)) => !m.controlled_by.is_empty() && m.controlled_by == *country,
        _ => false,
    }
}

/// Component indices with every input before the components that use it
/// (an iterative depth-first post-order, so deep chains cannot overflow the
/// stack). Validation keeps the graph acyclic; were it not, a component on a
/// cycle would still appear exactly once.
fn topological_order(inputs: &[Vec<(u32, f64)>]) -> Vec<u32> {
    let n = inputs.len();
    let mut state = vec![0u8; n]; // 0 new, 1 on the path, 2 done
    let mut order = Vec::with_capacity(n);
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = 1;
        while let Some((node, next)) = path.last_mut() {
            let node = *node;
            if let Some(&(child, _)) = inputs[node].get(*next) {
                *next += 1;
                if state[child as usize] == 0 {
                    state[child as usize] = 1;
                    path.push((child as usize, 0));
                }
            } else {
                state[node] = 2;
                order.push(node as u32);
                path.pop();
            }
        }
    }
    order
}
