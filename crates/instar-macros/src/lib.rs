//! `embed_migrations!("migrations")`: every file of a migrations folder (and of
//! its sub-folders, one level down) embedded in the binary with `include_bytes!`,
//! as an `instar_service::EmbeddedMigrations`. The path is relative to the
//! crate's `Cargo.toml`. Cargo rebuilds when an embedded file changes; to pick
//! up *new* files, add `println!("cargo:rerun-if-changed=migrations");` to a
//! build script.
//!
//! No parser crate: the one argument is a string literal, read by hand.
#![deny(missing_docs)]

use proc_macro::TokenStream;
use std::path::{Path, PathBuf};

/// Embeds a migrations folder; see the crate documentation.
#[proc_macro]
pub fn embed_migrations(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(code) => code.parse().unwrap_or_else(|e| error(&format!("{e}"))),
        Err(message) => error(&message),
    }
}

fn error(message: &str) -> TokenStream {
    format!("::core::compile_error!({message:?})")
        .parse()
        .unwrap_or_default()
}

fn expand(input: TokenStream) -> Result<String, String> {
    let text = input.to_string();
    let literal = text.trim();
    let folder = if literal.is_empty() {
        "migrations".to_string()
    } else {
        literal
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .filter(|s| !s.contains('\\') && !s.contains('"'))
            .ok_or("embed_migrations! takes one plain string literal: the folder, relative to Cargo.toml")?
            .to_string()
    };
    let root = std::env::var("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .map_err(|_| "CARGO_MANIFEST_DIR is not set".to_string())?
        .join(&folder);
    let mut files = Vec::new();
    collect(&root, Path::new(""), 0, &mut files)
        .map_err(|e| format!("embed_migrations!: cannot read {}: {e}", root.display()))?;
    files.sort();
    let entries: Vec<String> = files
        .iter()
        .map(|rel| {
            let abs = root.join(rel);
            format!(
                "({:?}, ::core::include_bytes!({:?}) as &[u8])",
                rel.to_string_lossy().replace('\\', "/"),
                abs.to_string_lossy()
            )
        })
        .collect();
    Ok(format!(
        "::instar_service::EmbeddedMigrations::new({folder:?}, &[{}])",
        entries.join(", ")
    ))
}

fn collect(root: &Path, rel: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = rel.join(&name);
        if entry.file_type()?.is_dir() {
            if depth == 0 {
                collect(root, &path, depth + 1, out)?;
            }
        } else {
            out.push(path);
        }
    }
    Ok(())
}
