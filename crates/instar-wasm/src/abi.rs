//! The Lens module ABI's shape, checked when a module is loaded: exactly
//! one import (`lens.next: () -> i32`), an exported `memory`, `alloc` taking
//! an i32 or an i64 size, `transform` and/or `inverse` (`() -> i32`), and
//! `set_param` (`(i32) -> i32`) when the module takes parameters. Anything
//! else is refused naming the import or export, before any code runs.

use wasmtime::{ExternType, FuncType, Module, ValType};

/// What a checked module exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// `transform` is exported.
    pub transform: bool,
    /// `inverse` is exported.
    pub inverse: bool,
    /// `set_param` is exported.
    pub set_param: bool,
    /// `alloc` takes an i64 size (some third-party modules), not an i32.
    pub alloc_i64: bool,
}

fn is(v: &ValType, want: &ValType) -> bool {
    matches!(
        (v, want),
        (ValType::I32, ValType::I32) | (ValType::I64, ValType::I64)
    )
}

/// Whether `f` is `(params) -> (results)`.
fn sig(f: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    f.params().len() == params.len()
        && f.results().len() == results.len()
        && f.params().zip(params).all(|(a, b)| is(&a, b))
        && f.results().zip(results).all(|(a, b)| is(&a, b))
}

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => {
            let list = |it: &mut dyn Iterator<Item = ValType>| {
                it.map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
            };
            format!(
                "a function ({}) -> ({})",
                list(&mut f.params()),
                list(&mut f.results())
            )
        }
        ExternType::Memory(_) => "a memory".into(),
        ExternType::Table(_) => "a table".into(),
        ExternType::Global(_) => "a global".into(),
        _ => "something else".into(),
    }
}

/// Checks `module` against the ABI.
pub fn check(module: &Module) -> Result<Shape, String> {
    for i in module.imports() {
        let ok = i.module() == "lens"
            && i.name() == "next"
            && matches!(i.ty(), ExternType::Func(f) if sig(&f, &[], &[ValType::I32]));
        if !ok {
            return Err(format!(
                "imports `{}.{}` ({}): a lens module may import only `lens.next` (a function () -> i32); it gets nothing else from the host",
                i.module(),
                i.name(),
                describe(&i.ty())
            ));
        }
    }
    let export = |name: &str| module.exports().find(|e| e.name() == name).map(|e| e.ty());
    let mut shape = Shape {
        transform: false,
        inverse: false,
        set_param: false,
        alloc_i64: false,
    };
    match export("memory") {
        Some(ExternType::Memory(_)) => {}
        Some(other) => return Err(format!("exports `memory` as {}, not a memory", describe(&other))),
        None => return Err("exports no `memory`: the ABI passes every item through the module's memory, exported as `memory`".into()),
    }
    match export("alloc") {
        Some(ExternType::Func(f)) if sig(&f, &[ValType::I32], &[ValType::I32]) => {}
        Some(ExternType::Func(f)) if sig(&f, &[ValType::I64], &[ValType::I32]) => {
            shape.alloc_i64 = true;
        }
        Some(other) => {
            return Err(format!(
                "exports `alloc` as {}, not a function (i32) -> i32 (or (i64) -> i32)",
                describe(&other)
            ))
        }
        None => {
            return Err(
                "exports no `alloc` (i32) -> i32: the host writes every item through it".into(),
            )
        }
    }
    for (name, want, flag) in [
        ("transform", "() -> i32", &mut shape.transform),
        ("inverse", "() -> i32", &mut shape.inverse),
    ] {
        match export(name) {
            Some(ExternType::Func(f)) if sig(&f, &[], &[ValType::I32]) => *flag = true,
            Some(other) => {
                return Err(format!(
                    "exports `{name}` as {}, not a function {want}",
                    describe(&other)
                ))
            }
            None => {}
        }
    }
    match export("set_param") {
        Some(ExternType::Func(f)) if sig(&f, &[ValType::I32], &[ValType::I32]) => {
            shape.set_param = true;
        }
        Some(other) => {
            return Err(format!(
                "exports `set_param` as {}, not a function (i32) -> i32",
                describe(&other)
            ))
        }
        None => {}
    }
    if !shape.transform && !shape.inverse {
        return Err(
            "exports neither `transform` nor `inverse` (() -> i32): it has nothing to run".into(),
        );
    }
    Ok(shape)
}
