//! The conformance behaviours on the in-memory store.

use std::sync::Arc;

use instar_kv::{KvStore, MemStore};

fn mem(_: &std::path::Path) -> Arc<dyn KvStore> {
    Arc::new(MemStore::new())
}

instar_kv::kv_conformance!(mem);
