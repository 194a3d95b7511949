//! WebAssembly stages of a lens, as the lens language sees them: a `wasm` op
//! (`{wasm: {path, arguments, inverse}}`, or a stage of DefraDB's own lens
//! config `{"lenses": [{"path", "inverse", "arguments"}]}`) names a module;
//! a [`Loader`] supplied by the program (Instar's is `instar-wasm`) turns it
//! into a [`Stage`] that runs. This crate stays pure: it runs no module itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

/// A loaded module that translates streams of documents.
pub trait Stage: Send + Sync + std::fmt::Debug {
    /// The module's content hash (`sha256:<hex>`): an edited module is a different stage.
    fn hash(&self) -> &str;

    /// Whether the module has the export for that direction (`inverse` or `transform`).
    fn can(&self, inverse: bool) -> bool;

    /// Runs one stream: `inputs` in order through the module's `transform`
    /// (or `inverse`), with `arguments` given to `set_param` when there are
    /// any. The outputs in order, `Value::Null` for a nil output; `Err` says
    /// what went wrong (a trap, a budget, an error item …) without the module's name.
    fn run(
        &self,
        inverse: bool,
        arguments: Option<&Value>,
        inputs: Vec<Value>,
    ) -> Result<Vec<Value>, String>;
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

    /// The stream of `docs` through the module (nil outputs are `null`).
    pub fn run(&self, docs: Vec<Value>) -> Result<Vec<Value>, String> {
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
        let mut out = self.run(vec![doc])?;
        match out.len() {
            1 if !out[0].is_null() => Ok(out.remove(0)),
            1 => Err("it returned no document (nil) for the document".into()),
            n => Err(format!(
                "it returned {n} documents for one; a collection's lens maps one document to one"
            )),
        }
    }
}
