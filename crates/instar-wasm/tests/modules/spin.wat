;; An endless loop.
(func (export "transform") (result i32) (loop $l (br $l)) (unreachable))
