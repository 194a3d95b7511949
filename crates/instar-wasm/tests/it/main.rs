//! The host against the ABI: every module shape of the reference test
//! modules (1:1, N:1, 1:N, 0:N, stateful, emitting before reading,
//! parameters, inverse, `alloc(i64)`), and every hostile one (an endless
//! loop, a memory hog, garbage pointers, undefined items, an endless stream,
//! extra imports, wrong export types, a file that is not WebAssembly).

mod guest;
mod hostile;
mod streams;

use std::path::PathBuf;
use std::sync::Arc;

use instar_wasm::{Host, LensModule, Limits};

/// Test module `name` compiled from its WAT into `dir`; its path.
pub fn module_file(dir: &std::path::Path, name: &str) -> PathBuf {
    let bytes = wat::parse_str(instar_wasm::testing::source(name))
        .unwrap_or_else(|e| panic!("{name}.wat: {e}"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A host with default limits (no disk cache) and test module `name` loaded.
pub fn load(name: &str) -> (Host, Arc<LensModule>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(Limits::default(), None).unwrap();
    let m = host.load(&module_file(dir.path(), name)).unwrap();
    (host, m, dir)
}
