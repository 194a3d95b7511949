//! The version graph: versions as nodes, each lens an edge usable both ways.
//! Reading at version V walks the shortest path (fewest lenses) from the
//! document's version, forward along a lens or backward through its reverse.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

use crate::fuse::{fuse, Fused, NotFused};
use crate::{Error, Lens};

/// Versions and the lenses between them.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    versions: Vec<String>,
    edges: Vec<Edge>,
    /// Per pair of versions (`from · n + to`), the fused form of the path when
    /// it is all forward and fuses; computed on first use.
    fused: OnceLock<Vec<Option<Fused>>>,
}

#[derive(Debug, Clone)]
struct Edge {
    from: usize,
    to: usize,
    lens: Lens,
    key: String,
}

/// A stored document's complements, one per lens it went forward through
/// when it was written (`"1.0.0--2.0.0#<lens fingerprint>"` → what that lens dropped).
pub type Complements = BTreeMap<String, crate::Complement>;

/// One lens of a path, and the way it is walked.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// The lens.
    pub lens: &'a Lens,
    /// Forward along it, or backward through its reverse.
    pub forward: bool,
    /// The lens's versions, `from--to`: the key of its complement.
    pub edge: &'a str,
}

/// A complement's key: the lens's versions and a fingerprint of its ops, so
/// that an edited lens never applies a complement the old one kept.
fn edge_key(from: &str, to: &str, lens: &Lens) -> String {
    // FNV-1a over the lens in its canonical JSON form and its modules' content.
    let mut text = crate::op::to_json(&lens.ops).to_string();
    for h in module_hashes(&lens.ops) {
        text.push_str(&h);
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{from}--{to}#{:08x}", h >> 32)
}

/// The content hashes of a lens's `wasm` stages, nested ones too.
fn module_hashes(ops: &[crate::Op]) -> Vec<String> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            crate::Op::Wasm(w) => out.extend(w.stage.as_ref().map(|s| s.hash().to_string())),
            crate::Op::In { lens, .. } | crate::Op::Map { lens } => out.extend(module_hashes(lens)),
            _ => {}
        }
    }
    out
}

/// A document error, naming the lens file it came from.
fn in_file(e: Error, lens: &Lens) -> Error {
    match e {
        Error::Document { at, op, message } => Error::Document {
            at,
            op: format!("{} ({})", op, lens.path.display()),
            message,
        },
        other => other,
    }
}

impl Graph {
    /// A graph of `versions` and no lens yet; a version listed twice is an error.
    pub fn new(versions: Vec<String>) -> Result<Graph, Error> {
        for (i, v) in versions.iter().enumerate() {
            if versions[..i].contains(v) {
                return Err(Error::Lens(format!("version {v} is declared twice")));
            }
        }
        Ok(Graph {
            versions,
            edges: Vec::new(),
            fused: OnceLock::new(),
        })
    }

    /// The declared versions, in order.
    pub fn versions(&self) -> &[String] {
        &self.versions
    }

    /// Whether any lens has a `wasm` stage (at its top level, where a batch
    /// streams through it).
    pub fn has_wasm(&self) -> bool {
        self.edges
            .iter()
            .any(|e| e.lens.ops.iter().any(|o| matches!(o, crate::Op::Wasm(_))))
    }

    /// A fingerprint of every lens between versions up to `upto` (in declared
    /// order): their ops and the content of their modules. A lens or module
    /// edited after documents were moved with it changes it; a lens to a
    /// newer version does not.
    pub fn fingerprint(&self, upto: &str) -> String {
        let last = self
            .versions
            .iter()
            .position(|v| v == upto)
            .unwrap_or(self.versions.len());
        let mut keys: Vec<&str> = self
            .edges
            .iter()
            .filter(|e| e.from <= last && e.to <= last)
            .map(|e| e.key.as_str())
            .collect();
        keys.sort_unstable();
        keys.join(" ")
    }

    /// The JSON Schema the lenses declare for documents at `version`: what
    /// some lens into it produces, or what some lens out of it gives back
    /// through its reverse (`anyOf`: a document arrives through one of them);
    /// `{"type": "object"}` for a version no lens touches.
    pub fn schema(&self, version: &str) -> Value {
        let Some(i) = self.versions.iter().position(|v| v == version) else {
            return serde_json::json!({"type": "object"});
        };
        let mut parts: Vec<Value> = Vec::new();
        for e in &self.edges {
            if e.to == i {
                parts.push(crate::schema::derive(&e.lens.ops));
            }
            if e.from == i {
                parts.push(crate::schema::derive(&crate::reverse(&e.lens.ops)));
            }
        }
        for p in &mut parts {
            if let Value::Object(o) = p {
                o.remove("$schema");
            }
        }
        match parts.len() {
            0 => serde_json::json!({"type": "object"}),
            1 => parts.remove(0),
            _ => serde_json::json!({"type": "object", "anyOf": parts}),
        }
    }

    fn index(&self, v: &str, lens: &Path) -> Result<usize, Error> {
        self.versions
            .iter()
            .position(|x| x == v)
            .ok_or_else(|| Error::File {
                path: lens.to_path_buf(),
                line: 0,
                message: format!(
                    "names version {v}, which is not declared (declared: {})",
                    self.versions.join(", ")
                ),
            })
    }

    /// Adds `lens` from version `from` to `to`. A lens naming an undeclared
    /// version, or a second lens between the same two versions, is an error
    /// naming the file(s).
    pub fn add(&mut self, from: &str, to: &str, lens: Lens) -> Result<(), Error> {
        let (a, b) = (self.index(from, &lens.path)?, self.index(to, &lens.path)?);
        if a == b {
            return Err(Error::File {
                path: lens.path.clone(),
                line: 0,
                message: format!("goes from version {from} to itself"),
            });
        }
        if let Some(e) = self
            .edges
            .iter()
            .find(|e| (e.from, e.to) == (a, b) || (e.from, e.to) == (b, a))
        {
            return Err(Error::File {
                path: lens.path.clone(),
                line: 0,
                message: format!(
                    "a second lens between {from} and {to}: {} is one already; keep one",
                    e.lens.path.display()
                ),
            });
        }
        let key = edge_key(from, to, &lens);
        self.fused = OnceLock::new();
        self.edges.push(Edge {
            from: a,
            to: b,
            lens,
            key,
        });
        Ok(())
    }

    /// Reads every lens of folder `dir` (`<from>--<to>.lens.yaml`, `.lens.yml`
    /// or `.lens.json`) into a graph of `versions`, and checks that every
    /// version can be reached from every other.
    pub fn load_dir(dir: &Path, versions: Vec<String>) -> Result<Graph, Error> {
        Graph::load_dir_with(dir, versions, None)
    }

    /// [`Graph::load_dir`], loading the modules of `wasm` stages with `loader`.
    pub fn load_dir_with(
        dir: &Path,
        versions: Vec<String>,
        loader: Option<&dyn crate::wasm::Loader>,
    ) -> Result<Graph, Error> {
        let mut g = Graph::new(versions)?;
        let mut files: Vec<_> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(Error::File {
                    path: dir.to_path_buf(),
                    line: 0,
                    message: format!("cannot list it: {e}"),
                })
            }
        };
        files.sort();
        for path in files {
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let Some(stem) = [".lens.yaml", ".lens.yml", ".lens.json"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
            else {
                continue;
            };
            let Some((from, to)) = stem.split_once("--") else {
                return Err(Error::File {
                    path: path.clone(),
                    line: 0,
                    message:
                        "a lens file is named <from>--<to>.lens.yaml (e.g. 1.0.0--2.0.0.lens.yaml)"
                            .into(),
                });
            };
            let (from, to) = (from.to_string(), to.to_string());
            g.add(&from, &to, Lens::load_with(&path, loader)?)?;
        }
        g.check_connected()?;
        Ok(g)
    }

    /// Refuses a graph where some version cannot be reached from the first.
    pub fn check_connected(&self) -> Result<(), Error> {
        let Some(first) = self.versions.first() else {
            return Ok(());
        };
        for v in &self.versions[1..] {
            if self.path(first, v).is_err() {
                return Err(Error::Lens(format!(
                    "version {v} has no lens path to {first}: add a lens between it and a neighbouring version"
                )));
            }
        }
        Ok(())
    }

    /// The shortest path of lenses from version `from` to `to` (none when equal).
    pub fn path(&self, from: &str, to: &str) -> Result<Vec<Step<'_>>, Error> {
        let find = |v: &str| {
            self.versions
                .iter()
                .position(|x| x == v)
                .ok_or_else(|| Error::Lens(format!("version {v} is not declared")))
        };
        let (a, b) = (find(from)?, find(to)?);
        // Breadth first: every lens counts one.
        let mut came: Vec<Option<(usize, usize, bool)>> = vec![None; self.versions.len()];
        let mut seen = vec![false; self.versions.len()];
        let mut queue = VecDeque::from([a]);
        seen[a] = true;
        while let Some(v) = queue.pop_front() {
            if v == b {
                break;
            }
            for (i, e) in self.edges.iter().enumerate() {
                let (next, forward) = if e.from == v {
                    (e.to, true)
                } else if e.to == v {
                    (e.from, false)
                } else {
                    continue;
                };
                if !seen[next] {
                    seen[next] = true;
                    came[next] = Some((v, i, forward));
                    queue.push_back(next);
                }
            }
        }
        if !seen[b] {
            return Err(Error::Lens(format!("no lens path from {from} to {to}")));
        }
        let mut steps = Vec::new();
        let mut v = b;
        while let Some((prev, i, forward)) = came[v] {
            steps.push(Step {
                lens: &self.edges[i].lens,
                forward,
                edge: &self.edges[i].key,
            });
            v = prev;
        }
        steps.reverse();
        Ok(steps)
    }

    /// The fused form of the path from `from` to `to`, or why there is none
    /// (a backward step, an op that does not fuse).
    pub fn fusion(&self, from: &str, to: &str) -> Result<Fused, NotFused> {
        let steps = self.path(from, to).map_err(|e| e.to_string())?;
        if let Some(back) = steps.iter().find(|s| !s.forward) {
            return Err(format!(
                "the path goes back through {} (complements are restored in process)",
                back.lens.path.display()
            ));
        }
        fuse(steps.iter().flat_map(|s| s.lens.ops.iter()))
    }

    /// The cached fused form of a forward path, where there is one.
    fn fused(&self, from: &str, to: &str) -> Option<&Fused> {
        let n = self.versions.len();
        let all = self.fused.get_or_init(|| {
            let mut all = Vec::with_capacity(n * n);
            for a in &self.versions {
                for b in &self.versions {
                    all.push(self.fusion(a, b).ok().filter(|_| a != b));
                }
            }
            all
        });
        let i = self.versions.iter().position(|v| v == from)?;
        let j = self.versions.iter().position(|v| v == to)?;
        all.get(i * n + j)?.as_ref()
    }

    /// `doc`, at version `from`, translated to version `to` (no complement:
    /// what a backward step cannot restore takes its default).
    pub fn translate(&self, doc: &Value, from: &str, to: &str) -> Result<Value, Error> {
        self.read(doc, from, to, &Complements::new())
    }

    /// A stored document read at another version: backward steps use the
    /// complements kept when it was written, so a document written at an old
    /// version reads back exactly as written.
    pub fn read(
        &self,
        doc: &Value,
        from: &str,
        to: &str,
        complements: &Complements,
    ) -> Result<Value, Error> {
        // One copy of the document, translated in place lens after lens.
        let mut out = doc.clone();
        if let Some(f) = self.fused(from, to).filter(|f| f.applies(doc)) {
            f.apply(&mut out);
            return Ok(out);
        }
        for s in self.path(from, to)? {
            if s.forward {
                crate::forward_mut(&s.lens.ops, &mut out).map_err(|e| in_file(e, s.lens))?;
            } else {
                crate::backward_mut(&s.lens.ops, &mut out, complements.get(s.edge))
                    .map_err(|e| in_file(e, s.lens))?;
            }
        }
        Ok(out)
    }

    /// A document written at version `from`, translated to the version `to`
    /// it is stored at, with the complements that make reading it back at
    /// `from` exact. Errors name the lens file.
    pub fn write(
        &self,
        doc: &Value,
        from: &str,
        to: &str,
        complements: &Complements,
    ) -> Result<(Value, Complements), Error> {
        let mut out = doc.clone();
        if let Some(f) = self.fused(from, to).filter(|f| f.applies(doc)) {
            // Exact where it applies: no lens of the path keeps a complement.
            f.apply(&mut out);
            return Ok((out, Complements::new()));
        }
        let kept = walk_path(&self.path(from, to)?, &mut out, complements)?;
        Ok((out, kept))
    }

    /// [`Graph::moved`] along a path already found, on a document it owns.
    fn moved_along(
        &self,
        path: &[Step<'_>],
        mut out: Value,
        from: &str,
        to: &str,
        mut complements: Complements,
    ) -> Result<(Value, Complements), Error> {
        let kept = match self.fused(from, to).filter(|f| f.applies(&out)) {
            Some(f) => {
                f.apply(&mut out);
                Complements::new()
            }
            None => walk_path(path, &mut out, &complements)?,
        };
        for st in path {
            complements.remove(st.edge);
        }
        complements.extend(kept);
        Ok((out, complements))
    }

    /// A stored document (at `from`, with its `complements`) moved to `to`:
    /// its body and its new complements — those of the lenses walked
    /// replaced by what this walk kept, the others left as they were.
    pub fn moved(
        &self,
        body: &Value,
        from: &str,
        to: &str,
        complements: Complements,
    ) -> Result<(Value, Complements), Error> {
        let path = self.path(from, to)?;
        self.moved_along(&path, body.clone(), from, to, complements)
    }

    /// [`Graph::moved`] for a batch of stored documents `(body, version,
    /// complements)`: the same results, but a `wasm` stage on a path takes
    /// all the documents at one version in one stream through one instance
    /// (a module that keeps state across documents sees the batch as one
    /// stream). Paths without one are walked document by document.
    pub fn moved_many(
        &self,
        items: Vec<(Value, String, Complements)>,
        to: &str,
    ) -> Vec<Result<(Value, Complements), Error>> {
        let mut out: Vec<Option<Result<(Value, Complements), Error>>> =
            (0..items.len()).map(|_| None).collect();
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (_, from, _)) in items.iter().enumerate() {
            groups.entry(from.clone()).or_default().push(i);
        }
        let mut items: Vec<Option<(Value, String, Complements)>> =
            items.into_iter().map(Some).collect();
        for (from, idx) in groups {
            let mut group: Vec<(Value, Complements)> = idx
                .iter()
                .filter_map(|&i| items[i].take().map(|(b, _, c)| (b, c)))
                .collect();
            let path = match self.path(&from, to) {
                Ok(p) => p,
                Err(e) => {
                    for &i in &idx {
                        out[i] = Some(Err(e.clone()));
                    }
                    continue;
                }
            };
            let streams = path
                .iter()
                .any(|s| s.lens.ops.iter().any(|o| matches!(o, crate::Op::Wasm(_))));
            if !streams {
                for (&i, (body, comps)) in idx.iter().zip(group) {
                    out[i] = Some(self.moved_along(&path, body, &from, to, comps));
                }
                continue;
            }
            let results = self.walk_many(&path, &mut group);
            for (&i, r) in idx.iter().zip(results) {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Lens("a document was not translated".into()))))
            .collect()
    }

    fn walk_many(
        &self,
        path: &[Step<'_>],
        group: &mut [(Value, Complements)],
    ) -> Vec<Result<(Value, Complements), Error>> {
        let mut docs: Vec<Value> = group.iter_mut().map(|(b, _)| b.take()).collect();
        let mut errs: Vec<Option<Error>> = vec![None; docs.len()];
        let mut kept: Vec<Complements> = vec![Complements::new(); docs.len()];
        for s in path {
            let failed_before: Vec<bool> = errs.iter().map(Option::is_some).collect();
            if s.forward {
                let comps = crate::apply::forward_many(&s.lens.ops, &mut docs, &mut errs);
                for (k, c) in kept.iter_mut().zip(comps) {
                    if !c.is_empty() {
                        k.insert(s.edge.to_string(), c);
                    }
                }
            } else {
                let comps: Vec<Option<&crate::Complement>> =
                    group.iter().map(|(_, c)| c.get(s.edge)).collect();
                crate::apply::backward_many(&s.lens.ops, &mut docs, &comps, &mut errs);
            }
            for (e, before) in errs.iter_mut().zip(failed_before) {
                if before {
                    continue;
                }
                if let Some(err) = e.take() {
                    *e = Some(in_file(err, s.lens));
                }
            }
        }
        docs.into_iter()
            .zip(errs)
            .zip(kept)
            .zip(group.iter_mut())
            .map(|(((doc, err), new), (_, comps))| match err {
                Some(e) => Err(e),
                None => {
                    let mut comps = std::mem::take(comps);
                    for st in path {
                        comps.remove(st.edge);
                    }
                    comps.extend(new);
                    Ok((doc, comps))
                }
            })
            .collect()
    }
}

/// Walks `out` along `path` in place: forward steps keep their complements
/// (returned, by edge), backward ones use those in `complements`. Errors
/// name the lens file.
fn walk_path(
    path: &[Step<'_>],
    out: &mut Value,
    complements: &Complements,
) -> Result<Complements, Error> {
    let mut kept = Complements::new();
    for s in path {
        if s.forward {
            let c = crate::forward_mut(&s.lens.ops, out).map_err(|e| in_file(e, s.lens))?;
            if !c.is_empty() {
                kept.insert(s.edge.to_string(), c);
            }
        } else {
            crate::backward_mut(&s.lens.ops, out, complements.get(s.edge))
                .map_err(|e| in_file(e, s.lens))?;
        }
    }
    Ok(kept)
}
