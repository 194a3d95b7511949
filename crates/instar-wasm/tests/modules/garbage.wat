;; Returns a pointer far outside its memory.
(func (export "transform") (result i32) (drop (call $next)) (i32.const 0x7ffffff0))
