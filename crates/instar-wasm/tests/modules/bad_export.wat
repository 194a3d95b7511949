;; `transform` with a parameter: not the ABI's () -> i32.
(func (export "transform") (param i32) (result i32) (local.get 0))
