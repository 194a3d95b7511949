;; identity, with `alloc` declared with an i64 size (as some third-party modules do).
(func (export "alloc") (param $n i64) (result i32) (call $malloc (i32.wrap_i64 (local.get $n))))
(func (export "transform") (result i32) (call $next))
