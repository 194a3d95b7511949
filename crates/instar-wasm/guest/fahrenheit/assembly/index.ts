// A Lens module (DefraDB's LensVM ABI) in AssemblyScript: a computed field.
// transform: {"celsius": 21.5, …} becomes {"fahrenheit": 70.7, …};
// inverse: the way back. Documents without the field pass unchanged.
// Build: `npm ci && npm run build` (writes fahrenheit.wasm, committed beside).

// The host's one import: the next input item (JSON, error or end of stream).
@external("lens", "next")
declare function next(): i32;

const JSON_ITEM: u8 = 1;
const ERROR_ITEM: u8 = 255; // -1 as a signed byte

// The item returned last: the host copies it out before calling again.
let lastOut: usize = 0;

// Replaces AssemblyScript's `env.abort` import (the ABI allows no other import).
function abort(message: string | null, file: string | null, line: u32, column: u32): void {
  unreachable();
}

// The host writes every item it passes in through this.
export function alloc(size: i32): i32 {
  return <i32>heap.alloc(<usize>size);
}

function item(kind: u8, text: string): i32 {
  if (lastOut != 0) heap.free(lastOut);
  const n = String.UTF8.byteLength(text);
  const p = heap.alloc(<usize>(5 + n));
  store<u8>(p, kind);
  store<u32>(p + 1, <u32>n);
  String.UTF8.encodeUnsafe(changetype<usize>(text), text.length, p + 5);
  lastOut = p;
  return <i32>p;
}

function convert(toFahrenheit: bool): i32 {
  const it = <usize>next();
  if (load<u8>(it) != JSON_ITEM) return <i32>it; // nil, error, end of stream: passed on
  const doc = String.UTF8.decodeUnsafe(it + 5, <usize>load<u32>(it + 1));
  heap.free(it);
  const from = toFahrenheit ? "\"celsius\":" : "\"fahrenheit\":";
  const to = toFahrenheit ? "\"fahrenheit\":" : "\"celsius\":";
  const at = doc.indexOf(from);
  if (at < 0) return item(JSON_ITEM, doc);
  let end = at + from.length;
  while (end < doc.length) {
    const c = doc.charCodeAt(end);
    if (c == 44 || c == 125) break; // ',' or '}'
    end++;
  }
  const value = parseFloat(doc.substring(at + from.length, end));
  if (isNaN(value)) return item(ERROR_ITEM, from + " is not a number");
  const out = toFahrenheit ? value * 9 / 5 + 32 : (value - 32) * 5 / 9;
  const rounded = Math.round(out * 1e6) / 1e6;
  return item(JSON_ITEM, doc.substring(0, at) + to + rounded.toString() + doc.substring(end));
}

export function transform(): i32 {
  return convert(true);
}

export function inverse(): i32 {
  return convert(false);
}
