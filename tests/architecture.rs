//! The shape of the code, checked: no import circles between modules, and
//! no function of a hundred lines or more outside the tests, except the
//! table-like ones named below. `cargo test --test architecture` runs it;
//! `cargo test --test architecture -- --nocapture` prints the module graph
//! and the longest functions.
//!
//! A module is a file (`src/network/writer.rs` is `network::writer`, a
//! folder's `mod.rs` is the folder). Module `a` depends on module `b` when
//! code of `a` outside its tests names `b` or an item of it, by `crate::`,
//! `super::`, `self::` or the name of a child module, in a `use` or in a
//! path. A folder naming its own rooms is how it is built, not a
//! dependency: edges from a module to its descendants are left out, while a
//! room naming its folder, or one room naming another, counts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Functions allowed to reach the limit, because they are tables rather
/// than logic: one arm or entry per case, read one line at a time.
const TABLE_LIKE: &[(&str, &str)] = &[
    // One arm per domain error: its code, reason and metadata.
    ("api/status.rs", "Status::from"),
];

/// A function reaching this many lines is too long.
const MAX_FUNCTION_LINES: usize = 100;

fn source_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("the source folder reads") {
        let path = entry.expect("an entry of the source folder").path();
        if path.is_dir() {
            source_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The module a library file holds (`[]` for `lib.rs`), or `None` for the
/// binaries' files.
fn module_of(file: &Path) -> Option<Vec<String>> {
    let relative = file.strip_prefix(src()).expect("a file under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts[0] == "main.rs" || parts[0] == "bin" {
        return None;
    }
    let last = parts.pop().expect("a file name");
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_owned()),
    }
    Some(parts)
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let path = attr.path();
        if path.is_ident("test") || path.segments.last().is_some_and(|s| s.ident == "test") {
            return true;
        }
        if path.is_ident("cfg") {
            let tokens = attr
                .meta
                .require_list()
                .map(|l| l.tokens.to_string())
                .unwrap_or_default();
            return tokens == "test" || tokens.starts_with("all(test") || tokens == "all (test)";
        }
        false
    })
}

fn parse(file: &Path) -> syn::File {
    let text = fs::read_to_string(file).expect("a source file reads");
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{} parses: {e}", file.display()))
}

/// Collects the modules a file's non-test code names.
struct Names<'a> {
    module: &'a [String],
    modules: &'a BTreeSet<Vec<String>>,
    named: BTreeSet<Vec<String>>,
}

impl Names<'_> {
    /// Resolves a path's leading segments to the module it names, if any.
    fn name(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else {
            return;
        };
        let (mut base, rest): (Vec<String>, &[String]) = match first.as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (self.module.to_vec(), &segments[1..]),
            "super" => {
                let mut base = self.module.to_vec();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                (base, rest)
            }
            _ => {
                let mut child = self.module.to_vec();
                child.push(first.clone());
                if !self.modules.contains(&child) {
                    return;
                }
                (self.module.to_vec(), segments)
            }
        };
        for segment in rest {
            let mut deeper = base.clone();
            deeper.push(segment.clone());
            if !self.modules.contains(&deeper) {
                break;
            }
            base = deeper;
        }
        self.named.insert(base);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.name(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.name(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.name(prefix),
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Names<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_only(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }

    /// `pub(crate)` and `pub(super)` say who may see, not what is used.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.name(&segments);
        syn::visit::visit_path(self, path);
    }
}

fn is_within(module: &[String], ancestor: &[String]) -> bool {
    module.len() >= ancestor.len() && &module[..ancestor.len()] == ancestor
}

fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

/// The modules declared `#[cfg(test)] mod name;` in their own files.
fn test_modules(library: &[(Vec<String>, PathBuf)]) -> Vec<Vec<String>> {
    let mut tests = Vec::new();
    for (module, file) in library {
        for item in parse(file).items {
            if let syn::Item::Mod(m) = item {
                if m.content.is_none() && is_test_only(&m.attrs) {
                    let mut test = module.clone();
                    test.push(m.ident.to_string());
                    tests.push(test);
                }
            }
        }
    }
    tests
}

/// Module → the modules it depends on.
fn module_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    source_files(&src(), &mut files);
    let library: Vec<(Vec<String>, PathBuf)> = files
        .into_iter()
        .filter_map(|f| module_of(&f).map(|m| (m, f)))
        .collect();
    let tests = test_modules(&library);
    let library: Vec<(Vec<String>, PathBuf)> = library
        .into_iter()
        .filter(|(m, _)| !tests.iter().any(|t| is_within(m, t)))
        .collect();
    let modules: BTreeSet<Vec<String>> = library.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &library {
        let mut names = Names {
            module,
            modules: &modules,
            named: BTreeSet::new(),
        };
        names.visit_file(&parse(file));
        let depends: BTreeSet<Vec<String>> = names
            .named
            .into_iter()
            .filter(|named| !is_within(named, module))
            .collect();
        graph.insert(module.clone(), depends);
    }
    graph
}

/// A circle of the graph, if it has one.
fn circle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        node: &Vec<String>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        path: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|n| n == node).expect("on the path");
                let mut found = path[start..].to_vec();
                found.push(node.clone());
                return Some(found);
            }
            None => {}
        }
        marks.insert(node.clone(), Mark::Open);
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(graph, next, marks, path) {
                return Some(found);
            }
        }
        path.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(found) = visit(graph, node, &mut marks, &mut Vec::new()) {
            return Some(found);
        }
    }
    None
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let graph = module_graph();
    assert!(graph.len() > 40, "the library's modules are found");
    for (module, depends) in &graph {
        let depends: Vec<String> = depends.iter().map(|d| display(d)).collect();
        println!("{} → {}", display(module), depends.join(", "));
    }
    if let Some(found) = circle(&graph) {
        let names: Vec<String> = found.iter().map(|m| display(m)).collect();
        panic!("an import circle: {}", names.join(" → "));
    }
}

#[test]
fn the_circle_check_finds_a_circle() {
    let m = |s: &str| -> Vec<String> { s.split("::").map(str::to_owned).collect() };
    let mut graph = BTreeMap::new();
    graph.insert(m("a"), BTreeSet::from([m("b")]));
    graph.insert(m("b"), BTreeSet::from([m("c")]));
    graph.insert(m("c"), BTreeSet::from([m("a")]));
    let found = circle(&graph).expect("a → b → c → a is a circle");
    assert_eq!(found.first(), found.last());
    assert_eq!(found.len(), 4);
    graph.insert(m("c"), BTreeSet::new());
    assert_eq!(circle(&graph), None);
}

/// Every non-test function of a file: its name (`Type::name` for methods)
/// and its length in lines, signature to closing brace.
struct Functions {
    owner: Vec<String>,
    found: Vec<(String, usize)>,
}

impl Functions {
    fn note(&mut self, name: &syn::Ident, sig_start: proc_macro2::Span, block: &syn::Block) {
        let lines = block.brace_token.span.close().end().line - sig_start.start().line + 1;
        let mut qualified = self.owner.clone();
        qualified.push(name.to_string());
        self.found.push((qualified.join("::"), lines));
    }
}

impl<'ast> Visit<'ast> for Functions {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test_only(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if is_test_only(&f.attrs) {
            return;
        }
        let start = syn::spanned::Spanned::span(&f.sig);
        self.note(&f.sig.ident, start, &f.block);
        self.owner.push(f.sig.ident.to_string());
        syn::visit::visit_item_fn(self, f);
        self.owner.pop();
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if is_test_only(&i.attrs) {
            return;
        }
        let name = match &*i.self_ty {
            syn::Type::Path(p) => p
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default(),
            _ => "impl".to_owned(),
        };
        self.owner.push(name);
        syn::visit::visit_item_impl(self, i);
        self.owner.pop();
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if is_test_only(&f.attrs) {
            return;
        }
        let start = syn::spanned::Spanned::span(&f.sig);
        self.note(&f.sig.ident, start, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            let start = syn::spanned::Spanned::span(&f.sig);
            self.note(&f.sig.ident, start, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

#[test]
fn no_function_outside_the_tests_reaches_a_hundred_lines() {
    let mut files = Vec::new();
    source_files(&src(), &mut files);
    let library: Vec<(Vec<String>, PathBuf)> = files
        .iter()
        .filter_map(|f| module_of(f).map(|m| (m, f.clone())))
        .collect();
    let tests = test_modules(&library);
    files.retain(|f| module_of(f).is_none_or(|m| !tests.iter().any(|t| is_within(&m, t))));
    let mut all = Vec::new();
    for file in &files {
        let mut functions = Functions {
            owner: Vec::new(),
            found: Vec::new(),
        };
        functions.visit_file(&parse(file));
        let relative = file
            .strip_prefix(src())
            .expect("under src")
            .display()
            .to_string();
        all.extend(
            functions
                .found
                .into_iter()
                .map(|(name, lines)| (relative.clone(), name, lines)),
        );
    }
    assert!(all.len() > 500, "the crate's functions are found");
    all.sort_by_key(|f| std::cmp::Reverse(f.2));
    for (file, name, lines) in all.iter().take(15) {
        println!("{lines:4}  {file}  {name}");
    }
    let too_long: Vec<String> = all
        .iter()
        .filter(|(file, name, lines)| {
            *lines >= MAX_FUNCTION_LINES && !TABLE_LIKE.contains(&(file.as_str(), name.as_str()))
        })
        .map(|(file, name, lines)| format!("{file} {name}: {lines} lines"))
        .collect();
    assert!(
        too_long.is_empty(),
        "functions of {MAX_FUNCTION_LINES} lines or more:\n{}",
        too_long.join("\n")
    );
}
