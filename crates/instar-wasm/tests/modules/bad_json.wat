;; Returns a JSON item whose payload is not JSON.
(data (i32.const 320) "\01\03\00\00\00{x}")
(func (export "transform") (result i32) (drop (call $next)) (i32.const 320))
