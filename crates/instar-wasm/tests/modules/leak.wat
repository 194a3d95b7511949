;; Allocates 1 MiB more on every call, then passes its input on.
(func (export "transform") (result i32)
  (drop (memory.grow (i32.const 16)))
  (call $next))
