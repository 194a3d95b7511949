;; Refuses every parameter (an error item), otherwise identity.
(func (export "set_param") (param i32) (result i32) (i32.const 16))
(func (export "transform") (result i32) (call $next))
