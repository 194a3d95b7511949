//! Compiled code cached on disk, keyed by the module's content hash and the
//! engine's compatibility hash, so a module is compiled once per machine.
//!
//! An entry is the SHA-256 digest of the compiled code followed by the code.
//! Loading checks the digest first: a truncated, corrupted or half-written
//! entry is recompiled (and rewritten), never run. Entries are written to a
//! temporary file and renamed into place, so a reader never sees half of one.
//! The digest detects accidents, not an attacker: the cache folder must be
//! as trusted as the `instar` binary (it holds machine code).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// The entry's file name: module hash, engine compatibility, this crate's version.
fn entry(dir: &Path, engine: &Engine, module_hash: &str) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    let hex = module_hash.trim_start_matches("sha256:");
    dir.join(format!("{hex}-{:016x}.cwasm", h.finish()))
}

/// The compiled module for `bytes` (whose hash is `module_hash`): from the
/// cache when a sound entry is there, else compiled (and cached when `dir`
/// is given; a cache that cannot be written only costs the next compile).
pub fn compile(
    engine: &Engine,
    dir: Option<&Path>,
    bytes: &[u8],
    module_hash: &str,
) -> Result<Module, String> {
    let Some(dir) = dir else {
        return Module::from_binary(engine, bytes).map_err(|e| format!("{e:#}"));
    };
    let path = entry(dir, engine, module_hash);
    if let Some(m) = read(engine, &path) {
        return Ok(m);
    }
    let module = Module::from_binary(engine, bytes).map_err(|e| format!("{e:#}"))?;
    if let Ok(code) = module.serialize() {
        let _ = write(dir, &path, &code);
    }
    Ok(module)
}

/// Whether `path` holds a sound entry; its module if so.
pub fn read(engine: &Engine, path: &Path) -> Option<Module> {
    let data = std::fs::read(path).ok()?;
    if data.len() < 32 {
        return None;
    }
    let (digest, code) = data.split_at(32);
    if Sha256::digest(code).as_slice() != digest {
        return None;
    }
    load_compiled(engine, code)
}

#[allow(unsafe_code)]
fn load_compiled(engine: &Engine, code: &[u8]) -> Option<Module> {
    // SAFETY: `code` is what `Module::serialize` wrote for an engine with the
    // same compatibility hash (it is in the file name), and its SHA-256 digest
    // matched, so it is those bytes unaltered; wasmtime itself refuses code
    // from another engine version or configuration (an `Err`, recompiled).
    unsafe { Module::deserialize(engine, code) }.ok()
}

fn write(dir: &Path, path: &Path, code: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut data = Sha256::digest(code).to_vec();
    data.extend_from_slice(code);
    std::fs::write(&tmp, &data)?;
    std::fs::rename(&tmp, path)
}
