//! WebAssembly stages of a lens, as the lens language sees them: a `wasm` op
//! (`{wasm: {path, arguments, inverse}}`, or a stage of DefraDB's own lens
//! config `{"lenses": [{"path", "inverse", "arguments"}]}`) names a module;
//! a [`Loader`] supplied by the program (Instar's is `instar-wasm`) turns it
//! into a [`Stage`] that runs. This crate stays pure: it runs no module itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

/// What one stream gave back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    /// Each item, in order: a document (`null` for a nil item), or the
    /// message of an error item (an error for that item; the stream went on).
    pub items: Vec<Result<Value, String>>,
    /// Whether item k came back right after the module read input k + 1 and
    /// no other, for every k, and one item per input: item k is then input
    /// k's translation.
    pub one_to_one: bool,
}

impl Outputs {
    /// The documents, or the error items (numbered from 1) when there are any.
    pub fn documents(self) -> Result<Vec<Value>, String> {
        let mut docs = Vec::with_capacity(self.items.len());
        let mut errors = Vec::new();
        for (i, item) in self.items.into_iter().enumerate() {
            match item {
                Ok(v) => docs.push(v),
                Err(m) => errors.push(format!("item {}: {m}", i + 1)),
            }
        }
        if errors.is_empty() {
            Ok(docs)
        } else {
            Err(format!("it returned error items: {}", errors.join("; ")))
        }
    }
}

/// A loaded module that translates streams of documents.
pub trait Stage: Send + Sync + std::fmt::Debug {
    /// The module's content hash (`sha256:<hex>`): an edited module is a different stage.
    fn hash(&self) -> &str;

    /// Whether the module has the export for that direction (`inverse` or `transform`).
    fn can(&self, inverse: bool) -> bool;

    /// Whether the module takes arguments (exports `set_param`).
    fn takes_arguments(&self) -> bool;

    /// Runs one stream: `inputs` in order through the module's `transform`
    /// (or `inverse`), with `arguments` given to `set_param` when there are
    /// any. `Err` says why the whole stream failed (a trap, a budget, a
    /// malformed item …) without the module's name.
    fn run(
        &self,
        inverse: bool,
        arguments: Option<&Value>,
        inputs: Vec<Value>,
    ) -> Result<Outputs, String>;
}

/// Loads the module a `wasm` op names.
pub trait Loader: Send + Sync {
    /// The module at `path` (already resolved against the lens file's folder).
    fn load(&self, path: &Path) -> Result<Arc<dyn Stage>, String>;
}

/// A `wasm` op: one WebAssembly module as a stage of a lens.
#[derive(Clone)]
pub struct Wasm {
    /// The path as written in the lens file (relative to it, or a `file://` URL).
    pub path: String,
    /// The arguments given to the module's `set_param` (only when non-empty).
    pub arguments: Option<Value>,
    /// Runs the module's `inverse` export instead of its `transform`.
    pub inverse: bool,
    /// The loaded module (`None` until the lens file is loaded with a [`Loader`]).
    pub stage: Option<Arc<dyn Stage>>,
}

impl PartialEq for Wasm {
    fn eq(&self, other: &Wasm) -> bool {
        self.path == other.path
            && self.arguments == other.arguments
            && self.inverse == other.inverse
            && self.stage.as_ref().map(|s| s.hash()) == other.stage.as_ref().map(|s| s.hash())
    }
}

impl std::fmt::Debug for Wasm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wasm")
            .field("path", &self.path)
            .field("arguments", &self.arguments)
            .field("inverse", &self.inverse)
            .field("hash", &self.stage.as_ref().map(|s| s.hash().to_string()))
            .finish()
    }
}

impl Wasm {
    /// The same stage, run the other way.
    pub fn flipped(&self) -> Wasm {
        Wasm {
            inverse: !self.inverse,
            ..self.clone()
        }
    }

    /// Where the module is: `path` relative to the lens file's folder, or a `file://` URL.
    pub fn resolve(&self, lens_file: &Path) -> Result<PathBuf, String> {
        let p = &self.path;
        if let Some(rest) = p.strip_prefix("file://") {
            return Ok(PathBuf::from(rest));
        }
        if p.contains("://") || p.starts_with("data:") {
            return Err(format!(
                "module path {p:?}: only files are loaded (a path relative to the lens file, or file://)"
            ));
        }
        let base = lens_file.parent().unwrap_or(Path::new("."));
        Ok(base.join(p))
    }

    /// Why this stage cannot be set up as written (arguments for a module
    /// without `set_param`), if it cannot.
    pub fn misfit(&self) -> Option<String> {
        let stage = self.stage.as_ref()?;
        (self.arguments.is_some() && !stage.takes_arguments()).then(|| {
            format!(
                "module {} exports no `set_param`, and the lens gives it arguments",
                self.path
            )
        })
    }

    /// Why this stage cannot run the way it is asked to, if it cannot.
    pub fn one_way(&self) -> Option<String> {
        let stage = self.stage.as_ref()?;
        (!stage.can(self.inverse)).then(|| {
            format!(
                "module {} has no `{}` export",
                self.path,
                if self.inverse { "inverse" } else { "transform" }
            )
        })
    }

    /// The stream of `docs` through the module.
    pub fn run(&self, docs: Vec<Value>) -> Result<Outputs, String> {
        let stage = self
            .stage
            .as_ref()
            .ok_or_else(|| format!("module {} is not loaded", self.path))?;
        if let Some(why) = self.one_way() {
            return Err(format!("the lens is one-way here: {why}"));
        }
        stage.run(self.inverse, self.arguments.as_ref(), docs)
    }

    /// One document through the module: a collection's lens maps one
    /// document to exactly one.
    pub fn run_one(&self, doc: Value) -> Result<Value, String> {
        let mut out = self.run(vec![doc])?.items;
        match out.len() {
            1 => one(out.remove(0)),
            n => Err(format!(
                "it returned {n} items for one document; a collection's lens maps one document to one"
            )),
        }
    }
}

/// One document's translation from its item: a document, not nil, not an error.
pub fn one(item: Result<Value, String>) -> Result<Value, String> {
    match item {
        Ok(Value::Null) => Err("it returned no document (nil) for the document".into()),
        Ok(v) => Ok(v),
        Err(m) => Err(format!("it returned an error item: {m}")),
    }
}
