;; Emits {"first": true} before reading anything, then passes its input on.
(data (i32.const 280) "\01\0e\00\00\00{\"first\":true}")
(global $started (mut i32) (i32.const 0))
(func (export "transform") (result i32)
  (if (i32.eqz (global.get $started))
    (then (global.set $started (i32.const 1)) (return (i32.const 280))))
  (call $next))
