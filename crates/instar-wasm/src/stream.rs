//! One stream through one fresh instance: the pull loop of the Lens ABI.
//!
//! Items cross the boundary as bytes in the module's memory: a signed type
//! id (1 JSON, 0 nil, negative an error, 127 end of stream), then for JSON
//! and errors a little-endian u32 length and the UTF-8 payload. The host
//! writes an item through the module's `alloc` (the module owns it) and
//! reads the item a call returns at once, before calling in again (the
//! module may reuse or grow its memory on the next call).

use std::collections::VecDeque;

use serde_json::Value;
use wasmtime::{
    AsContext, AsContextMut, Caller, Engine, Instance, InstancePre, Linker, Memory, Module, Store,
    StoreLimits, StoreLimitsBuilder, Trap, TypedFunc,
};

use instar_lens::wasm::Outputs;

use crate::{LensModule, Limits};

const JSON: i8 = 1;
const NIL: i8 = 0;
const END: i8 = 127;

/// What one instance's store holds.
pub struct State {
    limits: StoreLimits,
    budget: Limits,
    /// Documents not yet pulled by `lens.next`.
    inputs: VecDeque<Value>,
    /// How often `lens.next` answered end of stream.
    ends_given: usize,
    /// The module's `memory` and `alloc`, once instantiated.
    io: Option<Io>,
}

#[derive(Clone)]
enum Alloc {
    I32(TypedFunc<i32, i32>),
    I64(TypedFunc<i64, i32>),
}

#[derive(Clone)]
struct Io {
    memory: Memory,
    alloc: Alloc,
}

/// One item the module returned.
enum Item {
    Json(Value),
    Nil,
    Error(String),
    End,
}

/// The module linked to the host's one import, `lens.next`.
pub fn link(engine: &Engine, module: &Module) -> Result<InstancePre<State>, String> {
    let mut linker: Linker<State> = Linker::new(engine);
    linker
        .func_wrap("lens", "next", next)
        .map_err(|e| format!("{e:#}"))?;
    linker.instantiate_pre(module).map_err(|e| format!("{e:#}"))
}

/// Gives the module its next input: a JSON item, or end of stream once the
/// input is exhausted. Each document pulled gets a fresh budget.
fn next(mut caller: Caller<'_, State>) -> wasmtime::Result<i32> {
    let budget = caller.data().budget;
    let item = match caller.data_mut().inputs.pop_front() {
        Some(doc) => json_item(JSON, doc.to_string().as_bytes()),
        None => {
            let s = caller.data_mut();
            s.ends_given += 1;
            if s.ends_given > budget.idle_calls {
                return Err(wasmtime::Error::msg(format!(
                    "it asked for input {} times after the end of its input (an endless stream?)",
                    s.ends_given
                )));
            }
            vec![END as u8]
        }
    };
    refill(&mut caller, &budget)?;
    write_item(&mut caller, &item).map_err(wasmtime::Error::msg)
}

fn refill(mut ctx: impl AsContextMut<Data = State>, budget: &Limits) -> wasmtime::Result<()> {
    let mut ctx = ctx.as_context_mut();
    ctx.set_fuel(budget.fuel)?;
    let ticks = (budget.deadline.as_millis() / crate::TICK.as_millis()).max(1) as u64;
    ctx.set_epoch_deadline(ticks);
    Ok(())
}

fn json_item(kind: i8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Writes `item` into memory the module allocates for it; its address.
fn write_item(mut ctx: impl AsContextMut<Data = State>, item: &[u8]) -> Result<i32, String> {
    let io = ctx
        .as_context()
        .data()
        .io
        .clone()
        .ok_or("the module called lens.next before it was started")?;
    let len = i32::try_from(item.len()).map_err(|_| "an item over 2 GiB".to_string())?;
    let ptr = match &io.alloc {
        Alloc::I32(f) => f.call(&mut ctx, len),
        Alloc::I64(f) => f.call(&mut ctx, i64::from(len)),
    }
    .map_err(|e| cause(&e))?;
    let data = io.memory.data_mut(&mut ctx);
    let start = ptr as u32 as usize;
    let end = start.checked_add(item.len()).filter(|e| *e <= data.len());
    let Some(end) = end else {
        return Err(format!(
            "its alloc({len}) returned {ptr}, outside its memory of {} bytes",
            data.len()
        ));
    };
    data[start..end].copy_from_slice(item);
    Ok(ptr)
}

/// The item at `ptr`, copied out at once.
fn read_item(ctx: impl AsContext<Data = State>, memory: Memory, ptr: i32) -> Result<Item, String> {
    let data = memory.data(&ctx);
    let at = ptr as u32 as usize;
    let out_of_bounds = || {
        format!(
            "it returned the pointer {ptr}, and the item there does not fit its memory of {} bytes",
            data.len()
        )
    };
    let kind = *data.get(at).ok_or_else(out_of_bounds)? as i8;
    match kind {
        NIL => return Ok(Item::Nil),
        END => return Ok(Item::End),
        JSON => {}
        k if k < 0 => {}
        other => return Err(format!("it returned an item of type {other}, which the ABI does not define (1 JSON, 0 nil, negative error, 127 end)")),
    }
    let head = data.get(at + 1..at + 5).ok_or_else(out_of_bounds)?;
    let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let payload = (at + 5)
        .checked_add(n)
        .and_then(|end| data.get(at + 5..end))
        .ok_or_else(out_of_bounds)?;
    if kind == JSON {
        serde_json::from_slice(payload)
            .map(Item::Json)
            .map_err(|e| format!("it returned a JSON item that is not JSON ({e})"))
    } else {
        Ok(Item::Error(String::from_utf8_lossy(payload).into_owned()))
    }
}

/// A trap or host error in words: the budgets by name.
fn cause(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            "it ran out of its CPU budget (fuel) for one document: an endless loop, or raise the lens fuel limit".into()
        }
        Some(Trap::Interrupt) => {
            "it ran past its deadline for one call (wall clock): an endless loop, or raise the lens deadline".into()
        }
        Some(t) => format!("it trapped: {t}"),
        None => format!("{e:#}"),
    }
}

fn start(m: &LensModule, inputs: Vec<Value>) -> Result<(Store<State>, Instance), String> {
    let limits = StoreLimitsBuilder::new()
        .memory_size(m.limits.memory)
        .trap_on_grow_failure(true)
        .instances(1)
        .build();
    let mut store = Store::new(
        &m.engine,
        State {
            limits,
            budget: m.limits,
            inputs: inputs.into(),
            ends_given: 0,
            io: None,
        },
    );
    store.limiter(|s| &mut s.limits);
    refill(&mut store, &m.limits).map_err(|e| cause(&e))?;
    let instance = m.pre.instantiate(&mut store).map_err(|e| {
        let c = cause(&e);
        if c.contains("memory") || c.contains("resource limit") {
            format!(
                "it cannot start within its memory limit ({} bytes): {c}",
                m.limits.memory
            )
        } else {
            c
        }
    })?;
    let memory = instance
        .get_memory(&mut store, "memory")
        .ok_or("it has no memory")?;
    let alloc = if m.shape.alloc_i64 {
        Alloc::I64(
            instance
                .get_typed_func(&mut store, "alloc")
                .map_err(|e| cause(&e))?,
        )
    } else {
        Alloc::I32(
            instance
                .get_typed_func(&mut store, "alloc")
                .map_err(|e| cause(&e))?,
        )
    };
    store.data_mut().io = Some(Io { memory, alloc });
    Ok((store, instance))
}

/// Runs one stream through a fresh instance of `m` (see [`LensModule::run`]).
pub fn run(
    m: &LensModule,
    inverse: bool,
    arguments: Option<&Value>,
    inputs: Vec<Value>,
) -> Result<Outputs, String> {
    let total = inputs.len();
    let max_outputs = total.max(1).saturating_mul(m.limits.outputs_per_input);
    let (mut store, instance) = start(m, inputs)?;
    let memory = store
        .data()
        .io
        .as_ref()
        .map(|io| io.memory)
        .ok_or("no memory")?;
    if let Some(args) = arguments {
        if !m.shape.set_param {
            return Err("the lens gives it arguments, and it exports no `set_param`".into());
        }
        let set: TypedFunc<i32, i32> = instance
            .get_typed_func(&mut store, "set_param")
            .map_err(|e| cause(&e))?;
        let ptr = write_item(&mut store, &json_item(JSON, args.to_string().as_bytes()))?;
        let answer = set.call(&mut store, ptr).map_err(|e| cause(&e))?;
        if let Item::Error(message) = read_item(&store, memory, answer)? {
            return Err(format!("it refused its arguments: {message}"));
        }
    }
    let name = if inverse { "inverse" } else { "transform" };
    let export: TypedFunc<(), i32> = instance
        .get_typed_func(&mut store, name)
        .map_err(|_| format!("it exports no `{name}`"))?;
    let mut out = Outputs {
        items: Vec::new(),
        one_to_one: true,
    };
    let mut idle = 0;
    loop {
        refill(&mut store, &m.limits).map_err(|e| cause(&e))?;
        let ptr = export.call(&mut store, ()).map_err(|e| cause(&e))?;
        let item = read_item(&store, memory, ptr)?;
        let pulled = total - store.data().inputs.len();
        let exhausted = pulled == total && store.data().ends_given > 0;
        let item = match item {
            Item::End => break,
            Item::Error(message) => Err(message),
            Item::Json(v) => {
                idle = 0;
                Ok(v)
            }
            Item::Nil => {
                if exhausted {
                    idle += 1;
                    if idle > m.limits.idle_calls {
                        return Err(format!(
                            "it never ended its stream: {idle} calls after the end of its input returned nothing (nil) instead of end of stream"
                        ));
                    }
                }
                Ok(Value::Null)
            }
        };
        // Item k answers input k only if it came right after reading it.
        out.one_to_one &= pulled == out.items.len() + 1;
        out.items.push(item);
        if out.items.len() > max_outputs {
            return Err(format!(
                "it returned more than {max_outputs} items ({} per input): an endless stream, or raise the limit",
                m.limits.outputs_per_input
            ));
        }
    }
    out.one_to_one &= out.items.len() == total;
    Ok(out)
}
