//! The library's modules import each other one way only: no import cycle,
//! and no module imports a module of a higher layer (docs/architecture.md).
//!
//! The check parses every file of `bus/src` with syn, follows the `mod`
//! declarations from `lib.rs` (inline `mod x { .. }` too) to give each file
//! its module path, and collects an edge A -> B for every path in module A,
//! in `use` items, in types and expressions and in macro arguments, that
//! starts with `crate::`, `super::`, `self::` or a child module's name. The
//! path resolves to the longest module prefix; a name that a module
//! re-exports (`pub use`, `pub(crate) use`) resolves on to the module that
//! defines it, and a re-export of the module's own submodules is no edge,
//! so `lib.rs` and the facades' `mod.rs` files do not tie everything
//! together (a re-export from elsewhere is an edge, like an import). Items behind
//! `#[cfg(..)]` count, whatever the features.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The layers, bottom to top, by module path prefix (the longest prefix
/// wins). A module may import its own layer and the layers below it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "crate::error",
            "crate::codec",
            "crate::message",
            "crate::topic",
            "crate::hash",
            "crate::wire",
            "crate::limit",
            "crate::telemetry",
            "crate::reply::key",
            "crate::reply::topics",
            "crate::redrive",
            "crate::secret",
        ],
    ),
    ("transport contract", &["crate::transport"]),
    (
        "transports",
        &["crate::transport::memory", "crate::transport::kafka"],
    ),
    ("core", &["crate::core", "crate::event_log"]),
    (
        "delivery",
        &[
            "crate::delivery",
            "crate::context",
            "crate::handler",
            "crate::middleware",
            "crate::reply",
        ],
    ),
    ("config", &["crate::config"]),
    ("facade", &["crate::bus", "crate::__private"]),
    ("crate root", &["crate", "crate::__fuzz", "crate::markdown"]),
];

#[test]
fn the_library_imports_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("bus/src");
    let report = check(&src, LAYERS);
    assert!(
        report.modules.len() > 40,
        "only {} modules found under {}: the walk lost its way",
        report.modules.len(),
        src.display()
    );
    assert!(
        report.problems.is_empty(),
        "{}",
        report.problems.join("\n\n")
    );
}

#[test]
fn the_check_reports_a_cycle_and_an_upward_import() {
    let dir = std::env::temp_dir().join(format!(
        "topicbus-layers-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("low")).unwrap();
    let write = |name: &str, text: &str| fs::write(dir.join(name), text).unwrap();
    write(
        "lib.rs",
        "mod low; mod high; pub use crate::high::Facade;\n\
         mod inline { pub fn f() { super::low::Base::new(); } }",
    );
    // A re-export from elsewhere is an import: `Hidden` is used unseen.
    write(
        "low/mod.rs",
        "mod part; pub use self::part::Base;\n\
         pub(crate) use crate::high::Facade as Hidden; fn f() { let _ = Hidden; }",
    );
    // The upward import: the low layer calls into the high one.
    write(
        "low/part.rs",
        "pub struct Base; impl Base { pub fn new() -> Self { crate::high::helper(); Base } }",
    );
    // The cycle: high -> high::a -> high::b -> high (through a re-export
    // of high::b's `B` in high, which must resolve on to high::b).
    write(
        "high.rs",
        "mod a; mod b; pub use self::b::B; pub struct Facade; pub fn helper() { a::go(); }",
    );
    fs::create_dir_all(dir.join("high")).unwrap();
    write(
        "high/a.rs",
        "use crate::high::B; pub fn go() { let _ = B; }",
    );
    write(
        "high/b.rs",
        "pub struct B; fn back() { tracing::info!(x = ?crate::high::Facade); }",
    );
    let layers: &[(&str, &[&str])] = &[
        ("low", &["crate::low"]),
        ("high", &["crate::high"]),
        ("root", &["crate", "crate::inline"]),
    ];
    let report = check(&dir, layers);
    fs::remove_dir_all(&dir).unwrap();

    let all = report.problems.join("\n\n");
    assert_eq!(report.problems.len(), 3, "{all}");
    let cycle = report
        .problems
        .iter()
        .find(|p| p.starts_with("import cycle"))
        .unwrap_or_else(|| panic!("no cycle reported: {all}"));
    for edge in [
        "crate::high -> crate::high::a",
        "crate::high::a -> crate::high::b",
        "crate::high::b -> crate::high",
    ] {
        assert!(cycle.contains(edge), "{edge} missing from {cycle}");
    }
    assert!(cycle.contains("crate::high::B"), "{cycle}");
    assert!(cycle.contains("crate::high::Facade"), "{cycle}");
    let upward = report
        .problems
        .iter()
        .find(|p| p.starts_with("upward import: crate::low::part"))
        .unwrap_or_else(|| panic!("no upward import reported: {all}"));
    assert!(
        upward.contains("crate::low::part (low) -> crate::high (high)")
            && upward.contains("crate::high::helper"),
        "{upward}"
    );
    assert!(
        report.problems.iter().any(|p| p
            .starts_with("upward import: crate::low (low) -> crate::high (high)")
            && p.contains("crate::high::Facade")),
        "{all}"
    );
}

struct Report {
    modules: BTreeSet<String>,
    problems: Vec<String>,
}

/// What one module holds, for resolving paths into it.
#[derive(Default)]
struct Module {
    children: BTreeSet<String>,
    defined: BTreeSet<String>,
    /// name -> absolute path it re-exports
    reexports: BTreeMap<String, Vec<String>>,
    glob_reexports: Vec<Vec<String>>,
    /// absolute paths used, with the file they are used in
    uses: Vec<(Vec<String>, String)>,
}

fn check(src: &Path, layers: &[(&str, &[&str])]) -> Report {
    let mut modules = BTreeMap::new();
    load_file(&src.join("lib.rs"), true, "crate", &mut modules);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let root = format!("{}/", src.display());
    for (name, module) in &modules {
        for (path, at) in &module.uses {
            let target = resolve(&modules, path, 0);
            if &target == name {
                continue;
            }
            graph
                .entry(name.clone())
                .or_default()
                .entry(target)
                .or_default()
                .insert(format!(
                    "{} ({})",
                    path.join("::"),
                    at.strip_prefix(&root).unwrap_or(at)
                ));
        }
    }
    let mut problems = Vec::new();
    for scc in strongly_connected(&graph) {
        problems.push(describe_cycle(&graph, &scc));
    }
    let layer_of = |module: &str| -> Option<(usize, &str)> {
        let mut best: Option<(usize, usize, &str)> = None;
        for (index, (layer, prefixes)) in layers.iter().enumerate() {
            for prefix in *prefixes {
                let fits = module == *prefix || module.starts_with(&format!("{prefix}::"));
                if fits && best.is_none_or(|(len, _, _)| prefix.len() > len) {
                    best = Some((prefix.len(), index, layer));
                }
            }
        }
        best.map(|(_, index, layer)| (index, layer))
    };
    for name in modules.keys() {
        if layer_of(name).is_none() {
            problems.push(format!(
                "module {name} is in no layer: add it to the layer table of tests/layers.rs"
            ));
        }
    }
    for (from, targets) in &graph {
        for (to, names) in targets {
            if let (Some((low, low_name)), Some((high, high_name))) = (layer_of(from), layer_of(to))
            {
                if high > low {
                    problems.push(format!(
                        "upward import: {from} ({low_name}) -> {to} ({high_name}) through {}",
                        names.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    Report {
        modules: modules.keys().cloned().collect(),
        problems,
    }
}

fn load_file(file: &Path, mod_rs: bool, name: &str, modules: &mut BTreeMap<String, Module>) {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    // Where `mod x;` looks for x's file: beside a mod-rs file, in a folder
    // named after any other file.
    let dir = if mod_rs {
        file.parent().unwrap().to_path_buf()
    } else {
        file.with_extension("")
    };
    let here = file.parent().unwrap().to_path_buf();
    load_items(
        &parsed.items,
        name,
        &dir,
        &here,
        &file.display().to_string(),
        modules,
    );
}

fn load_items(
    items: &[syn::Item],
    name: &str,
    dir: &Path,
    file_dir: &Path,
    file: &str,
    modules: &mut BTreeMap<String, Module>,
) {
    modules.entry(name.to_owned()).or_default();
    let mut collector = Collector {
        module: name.split("::").map(str::to_owned).collect(),
        children: items
            .iter()
            .filter_map(|i| match i {
                syn::Item::Mod(m) => Some(m.ident.to_string()),
                _ => None,
            })
            .collect(),
        file: file.to_owned(),
        uses: Vec::new(),
    };
    for item in items {
        match item {
            syn::Item::Mod(m) => {
                let child = format!("{name}::{}", m.ident);
                modules
                    .get_mut(name)
                    .unwrap()
                    .children
                    .insert(m.ident.to_string());
                if let Some((_, inner)) = &m.content {
                    load_items(
                        inner,
                        &child,
                        &dir.join(m.ident.to_string()),
                        file_dir,
                        file,
                        modules,
                    );
                } else if let Some(path) = path_attr(&m.attrs) {
                    load_file(&file_dir.join(path), false, &child, modules);
                } else {
                    let flat = dir.join(format!("{}.rs", m.ident));
                    if flat.exists() {
                        load_file(&flat, false, &child, modules);
                    } else {
                        load_file(
                            &dir.join(m.ident.to_string()).join("mod.rs"),
                            true,
                            &child,
                            modules,
                        );
                    }
                }
            }
            syn::Item::Use(u) if !matches!(u.vis, syn::Visibility::Inherited) => {
                let mut flat = Vec::new();
                flatten_use(&u.tree, Vec::new(), &mut flat);
                for (path, alias) in flat {
                    let Some(path) = collector.absolute(&path) else {
                        continue;
                    };
                    // Re-exporting from outside its own subtree makes a
                    // module depend on the source like an import does (it
                    // could otherwise use the name freely, unseen).
                    if !path.starts_with(&collector.module) {
                        collector.uses.push((path.clone(), file.to_owned()));
                    }
                    let module = modules.get_mut(name).unwrap();
                    match alias {
                        Some(alias) if alias != "self" => {
                            module.reexports.insert(alias, path);
                        }
                        Some(_) => {
                            let last = path.last().unwrap().clone();
                            module.reexports.insert(last, path);
                        }
                        None => module.glob_reexports.push(path),
                    }
                }
            }
            syn::Item::Use(u) => collector.visit_item_use(u),
            other => {
                if let Some(ident) = item_name(other) {
                    modules.get_mut(name).unwrap().defined.insert(ident);
                }
                collector.visit_item(other);
            }
        }
    }
    let uses = collector.uses;
    modules.get_mut(name).unwrap().uses.extend(uses);
}

fn path_attr(attrs: &[syn::Attribute]) -> Option<PathBuf> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(PathBuf::from(s.value())),
            _ => None,
        },
        _ => None,
    })
}

fn item_name(item: &syn::Item) -> Option<String> {
    Some(match item {
        syn::Item::Const(i) => i.ident.to_string(),
        syn::Item::Enum(i) => i.ident.to_string(),
        syn::Item::Fn(i) => i.sig.ident.to_string(),
        syn::Item::Macro(i) => i.ident.as_ref()?.to_string(),
        syn::Item::Static(i) => i.ident.to_string(),
        syn::Item::Struct(i) => i.ident.to_string(),
        syn::Item::Trait(i) => i.ident.to_string(),
        syn::Item::TraitAlias(i) => i.ident.to_string(),
        syn::Item::Type(i) => i.ident.to_string(),
        syn::Item::Union(i) => i.ident.to_string(),
        _ => return None,
    })
}

/// Each leaf of a use tree: its path and the name it brings in (`None` for
/// a glob).
fn flatten_use(
    tree: &syn::UseTree,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let with = |segment: String| {
        let mut p = prefix.clone();
        p.push(segment);
        p
    };
    match tree {
        syn::UseTree::Path(p) => flatten_use(&p.tree, with(p.ident.to_string()), out),
        syn::UseTree::Name(n) if n.ident == "self" => {
            let last = prefix.last().cloned();
            out.push((prefix.clone(), last));
        }
        syn::UseTree::Name(n) => out.push((with(n.ident.to_string()), Some(n.ident.to_string()))),
        syn::UseTree::Rename(r) => {
            let path = if r.ident == "self" {
                prefix.clone()
            } else {
                with(r.ident.to_string())
            };
            out.push((path, Some(r.rename.to_string())));
        }
        syn::UseTree::Glob(_) => out.push((prefix.clone(), None)),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix.clone(), out);
            }
        }
    }
}

/// Collects the crate-relative paths one module's items use.
struct Collector {
    module: Vec<String>,
    children: BTreeSet<String>,
    file: String,
    uses: Vec<(Vec<String>, String)>,
}

impl Collector {
    /// `path` made absolute from this module, or `None` when it names
    /// another crate (or a local name).
    fn absolute(&self, path: &[String]) -> Option<Vec<String>> {
        let first = path.first()?;
        let mut out;
        let rest;
        match first.as_str() {
            "crate" => {
                out = vec!["crate".to_owned()];
                rest = &path[1..];
            }
            "self" => {
                out = self.module.clone();
                rest = &path[1..];
            }
            "super" => {
                out = self.module.clone();
                let supers = path.iter().take_while(|s| *s == "super").count();
                for _ in 0..supers {
                    out.pop();
                }
                rest = &path[supers..];
            }
            child if self.children.contains(child) && path.len() > 1 => {
                out = self.module.clone();
                rest = path;
            }
            _ => return None,
        }
        out.extend(rest.iter().cloned());
        Some(out)
    }

    fn record(&mut self, path: Vec<String>) {
        if let Some(abs) = self.absolute(&path) {
            self.uses.push((abs, self.file.clone()));
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut flat = Vec::new();
        flatten_use(&u.tree, Vec::new(), &mut flat);
        for (path, _) in flat {
            self.record(path);
        }
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // Inline modules are modules of their own (load_items).
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.record(segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        for path in paths_in_tokens(&mac.tokens.to_string()) {
            self.record(path);
        }
        syn::visit::visit_macro(self, mac);
    }
}

/// The `a::b::c` paths in a macro's tokens, which syn leaves unparsed.
fn paths_in_tokens(text: &str) -> Vec<Vec<String>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut ident = String::from(c);
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || n == '_' {
                    ident.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(ident);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            tokens.push("::".to_owned());
        } else if c == '"' {
            // Skip string literals: their text is no path.
            let mut escaped = false;
            for n in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if n == '\\' {
                    escaped = true;
                } else if n == '"' {
                    break;
                }
            }
            tokens.push(String::new());
        } else if !c.is_whitespace() {
            tokens.push(String::new());
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts = i == 0 || tokens[i - 1] != "::";
        if starts && !tokens[i].is_empty() && tokens[i] != "::" {
            let mut path = vec![tokens[i].clone()];
            let mut j = i + 1;
            while j + 1 < tokens.len()
                && tokens[j] == "::"
                && !tokens[j + 1].is_empty()
                && tokens[j + 1] != "::"
            {
                path.push(tokens[j + 1].clone());
                j += 2;
            }
            if path.len() > 1 {
                out.push(path);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The module an absolute path lands in: the longest module prefix, with
/// re-exported names followed to the module that defines them.
fn resolve(modules: &BTreeMap<String, Module>, path: &[String], depth: usize) -> String {
    assert!(depth < 32, "re-exports loop at {}", path.join("::"));
    let mut current = path[0].clone();
    for (index, segment) in path.iter().enumerate().skip(1) {
        let Some(module) = modules.get(&current) else {
            break;
        };
        if module.children.contains(segment) {
            current = format!("{current}::{segment}");
            continue;
        }
        if module.defined.contains(segment) {
            break;
        }
        if let Some(target) = module.reexports.get(segment) {
            let mut next = target.clone();
            next.extend(path[index + 1..].iter().cloned());
            return resolve(modules, &next, depth + 1);
        }
        for glob in &module.glob_reexports {
            let mut next = glob.clone();
            next.extend(path[index..].iter().cloned());
            let landed = resolve(modules, &next, depth + 1);
            if modules
                .get(&landed)
                .is_some_and(|m| m.defined.contains(segment) || m.children.contains(segment))
            {
                return landed;
            }
        }
        break;
    }
    current
}

/// Tarjan's strongly connected components with more than one module.
fn strongly_connected(
    graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        index: HashMap<&'g str, usize>,
        low: HashMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(targets) = s.graph.get(v) {
            for w in targets.keys() {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let low = s.low[v].min(s.low[w]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.low[v].min(s.index[w]);
                    s.low.insert(v, low);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// One cycle through a component (the shortest way back to its first
/// module), every edge with the names that tie it, then the component's
/// other modules.
fn describe_cycle(
    graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    component: &[String],
) -> String {
    let members: BTreeSet<&str> = component.iter().map(String::as_str).collect();
    let start = component[0].as_str();
    // Breadth-first from start, inside the component, back to start.
    let mut came_from: HashMap<&str, &str> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut end = None;
    while let Some(v) = queue.pop_front() {
        for w in graph[v].keys().map(String::as_str) {
            if !members.contains(w) {
                continue;
            }
            if w == start {
                end = Some(v);
                break;
            }
            if !came_from.contains_key(w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
        if end.is_some() {
            break;
        }
    }
    let mut back = Vec::new();
    let mut v = end.expect("a component has a cycle");
    while v != start {
        back.push(v);
        v = came_from[v];
    }
    let mut cycle = vec![start];
    cycle.extend(back.into_iter().rev());
    cycle.push(start);
    let mut text = format!(
        "import cycle among {} modules ({}):",
        component.len(),
        component.join(", ")
    );
    for pair in cycle.windows(2) {
        let names = &graph[pair[0]][pair[1]];
        text.push_str(&format!(
            "\n  {} -> {} through {}",
            pair[0],
            pair[1],
            names.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    text
}
