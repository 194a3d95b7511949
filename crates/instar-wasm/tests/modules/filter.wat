;; N:1, passes only the documents whose "__type" is "pass".
(data (i32.const 200) "\"__type\":\"pass\"")
(func (export "transform") (result i32)
  (local $it i32)
  (loop $l
    (local.set $it (call $next))
    (if (i32.ne (call $kind (local.get $it)) (i32.const 1)) (then (return (local.get $it))))
    (if (i32.ge_s
          (call $find (call $payload (local.get $it)) (call $len (local.get $it)) (i32.const 200) (i32.const 15))
          (i32.const 0))
      (then (return (local.get $it))))
    (br $l))
  (unreachable))
