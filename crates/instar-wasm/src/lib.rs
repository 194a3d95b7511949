//! The WebAssembly lens host of Instar: runs modules written for DefraDB's
//! LensVM (the Lens module ABI) as stages of a lens, sandboxed.
//!
//! - [`Host`] owns one wasmtime engine for the process, the compiled-code
//!   cache ([`cache`]) and the modules loaded so far, by content hash;
//! - [`Host::load`] reads a module, checks its shape against the ABI
//!   ([`abi::check`]: `memory`, `alloc` with an i32 or i64 size, `transform`
//!   and/or `inverse`, `set_param`, and no import but `lens.next`), and
//!   compiles it once;
//! - [`LensModule::run`] drives one stream of documents through a fresh
//!   instance ([`stream`]): parameters, the pull loop, items both ways.
//!
//! The sandbox, per document: a fuel budget (deterministic CPU limit), a
//! wall-clock deadline (epoch interruption, the backstop), a memory limit,
//! and bounds on the stream (outputs, calls after the end of input). Every
//! fault — a trap, a spent budget, a malformed item, an out-of-bounds
//! pointer — is an error for that stream; its instance is dropped, never
//! reused. No wasmtime type is part of this crate's API.
#![deny(missing_docs)]

pub mod abi;
pub mod cache;
mod stream;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instar_lens::wasm::Outputs;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Everything that can go wrong loading a module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file cannot be read.
    #[error("{path}: cannot read it: {message}")]
    Read {
        /// The module file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The file is not a WebAssembly module wasmtime can compile.
    #[error("{path}: not a WebAssembly module Instar can run: {message}")]
    NotWasm {
        /// The module file.
        path: PathBuf,
        /// The compiler's words.
        message: String,
    },
    /// The module does not have the Lens ABI's shape.
    #[error("{path}: {message}")]
    Abi {
        /// The module file.
        path: PathBuf,
        /// What is wrong (names the import or export).
        message: String,
    },
    /// The engine could not be set up.
    #[error("the WebAssembly engine: {0}")]
    Engine(String),
}

/// The sandbox's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (about one unit per WebAssembly instruction) a module may burn
    /// per document it reads or item it returns.
    pub fuel: u64,
    /// Wall-clock time a call into the module may take before it is interrupted.
    pub deadline: Duration,
    /// The most linear memory a module may have, in bytes.
    pub memory: usize,
    /// The most items a stream may return per item it reads (1:N modules).
    pub outputs_per_input: usize,
    /// Calls after the end of the input that return nothing (nil) before the
    /// stream is declared endless.
    pub idle_calls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 50_000_000,
            deadline: Duration::from_secs(5),
            memory: 64 << 20,
            outputs_per_input: 10_000,
            idle_calls: 1_000,
        }
    }
}

/// Instances alive at once per host (streams run at once: parallel workers).
const POOL: u32 = 128;

/// The tick of the wall-clock backstop.
const TICK: Duration = Duration::from_millis(10);

/// The process's module host: one engine, a compiled-code cache, the modules
/// loaded so far. Cheap to share (`Arc`).
pub struct Host {
    engine: wasmtime::Engine,
    limits: Limits,
    cache: Option<PathBuf>,
    loaded: Mutex<HashMap<String, Arc<LensModule>>>,
    ticker: Arc<Ticker>,
}

/// The thread that moves the engine's epoch on (the deadline's clock). It
/// runs while the host or any module loaded by it is alive.
struct Ticker {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("limits", &self.limits)
            .field("cache", &self.cache)
            .finish()
    }
}

impl Host {
    /// A host with these limits, caching compiled code in `cache` (a folder,
    /// created when first written) when given.
    pub fn new(limits: Limits, cache: Option<PathBuf>) -> Result<Host, Error> {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        config.epoch_interruption(true);
        // A pool of instance slots, reused: a fresh instance per stream costs
        // a few microseconds (memory reset copy-on-write) instead of mapping anew.
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_core_instances(POOL)
            .total_memories(POOL)
            .total_tables(POOL)
            .max_memory_size(limits.memory);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = wasmtime::Engine::new(&config).map_err(|e| Error::Engine(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("instar-wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| Error::Engine(format!("starting the deadline ticker: {e}")))?
        };
        Ok(Host {
            engine,
            limits,
            cache,
            loaded: Mutex::new(HashMap::new()),
            ticker: Arc::new(Ticker {
                thread: Some(ticker),
                stop,
            }),
        })
    }

    /// The module at `path`: read, checked against the ABI, compiled (or
    /// taken from the cache) once per content; the same content loaded again
    /// is the same module.
    pub fn load(&self, path: &Path) -> Result<Arc<LensModule>, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let hash = format!("sha256:{:x}", Sha256::digest(&bytes));
        if let Some(m) = self.loaded.lock().ok().and_then(|l| l.get(&hash).cloned()) {
            return Ok(m);
        }
        let module = cache::compile(&self.engine, self.cache.as_deref(), &bytes, &hash).map_err(
            |message| Error::NotWasm {
                path: path.to_path_buf(),
                message,
            },
        )?;
        let shape = abi::check(&module).map_err(|message| Error::Abi {
            path: path.to_path_buf(),
            message,
        })?;
        let pre = stream::link(&self.engine, &module).map_err(|message| Error::Abi {
            path: path.to_path_buf(),
            message,
        })?;
        let m = Arc::new(LensModule {
            name: path.display().to_string(),
            hash: hash.clone(),
            shape,
            pre,
            engine: self.engine.clone(),
            limits: self.limits,
            _ticker: self.ticker.clone(),
        });
        if let Ok(mut l) = self.loaded.lock() {
            l.insert(hash, m.clone());
        }
        Ok(m)
    }
}

/// A compiled, checked module, ready to run streams.
pub struct LensModule {
    name: String,
    hash: String,
    shape: abi::Shape,
    pre: wasmtime::InstancePre<stream::State>,
    engine: wasmtime::Engine,
    limits: Limits,
    /// Keeps the deadline's clock running while the module is in use.
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for LensModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LensModule")
            .field("name", &self.name)
            .field("hash", &self.hash)
            .field("shape", &self.shape)
            .finish()
    }
}

impl LensModule {
    /// Its content hash, `sha256:<hex>`.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// What it exports.
    pub fn shape(&self) -> &abi::Shape {
        &self.shape
    }

    /// Runs one stream: `inputs` through `transform` (or `inverse`) of a fresh
    /// instance, after `set_param(arguments)` when there are arguments: every
    /// item it returned (an error item is an error for that item; the stream
    /// goes on), or why the whole stream failed.
    pub fn run(
        &self,
        inverse: bool,
        arguments: Option<&Value>,
        inputs: Vec<Value>,
    ) -> Result<Outputs, String> {
        stream::run(self, inverse, arguments, inputs)
    }

    /// [`LensModule::run`], as documents (`null` for a nil item); an error
    /// item fails it (naming the items).
    pub fn values(
        &self,
        inverse: bool,
        arguments: Option<&Value>,
        inputs: Vec<Value>,
    ) -> Result<Vec<Value>, String> {
        self.run(inverse, arguments, inputs)?.documents()
    }
}

impl instar_lens::wasm::Stage for LensModule {
    fn hash(&self) -> &str {
        &self.hash
    }

    fn can(&self, inverse: bool) -> bool {
        if inverse {
            self.shape.inverse
        } else {
            self.shape.transform
        }
    }

    fn takes_arguments(&self) -> bool {
        self.shape.set_param
    }

    fn run(
        &self,
        inverse: bool,
        arguments: Option<&Value>,
        inputs: Vec<Value>,
    ) -> Result<Outputs, String> {
        LensModule::run(self, inverse, arguments, inputs)
    }
}

impl instar_lens::wasm::Loader for Host {
    fn load(&self, path: &Path) -> Result<Arc<dyn instar_lens::wasm::Stage>, String> {
        Host::load(self, path)
            .map(|m| m as Arc<dyn instar_lens::wasm::Stage>)
            .map_err(|e| e.to_string())
    }
}

/// The test modules of this repository (`tests/modules/*.wat`): each file is
/// a module's body, wrapped here with the `lens.next` import, an exported
/// memory, the shared prelude and a default `alloc`. For tests (compile the
/// text with the `wat` crate); not part of the host.
#[doc(hidden)]
pub mod testing {
    /// The whole WAT text of test module `name` (`identity`, `add`, …).
    pub fn source(name: &str) -> String {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/modules");
        let read =
            |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let body = read(&format!("{name}.wat"));
        // Imports come first in a module's text.
        let (imports, rest): (Vec<&str>, Vec<&str>) = body
            .lines()
            .partition(|l| l.trim_start().starts_with("(import"));
        let alloc = if body.contains("(export \"alloc\")") {
            ""
        } else {
            "(func (export \"alloc\") (param $n i32) (result i32) (call $malloc (local.get $n)))"
        };
        format!(
            "(module\n(import \"lens\" \"next\" (func $next (result i32)))\n{}\n(memory (export \"memory\") 1)\n{}\n{alloc}\n{}\n)",
            imports.join("\n"),
            read("prelude.wat"),
            rest.join("\n")
        )
    }
}
