;; Never returns end of stream: nil forever.
(func (export "transform") (result i32) (drop (call $next)) (i32.const 0))
