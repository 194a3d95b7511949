;; 1:N, a book {"pages": N} becomes N page documents {"page": k} (0 pages: none).
(data (i32.const 220) "\"pages\":")
(data (i32.const 240) "{\"page\":")
(global $left (mut i32) (i32.const 0))
(global $k (mut i32) (i32.const 0))
(func (export "transform") (result i32)
  (local $it i32) (local $at i32) (local $out i32)
  (loop $l
    (if (i32.gt_s (global.get $left) (i32.const 0))
      (then
        (global.set $left (i32.sub (global.get $left) (i32.const 1)))
        (global.set $k (i32.add (global.get $k) (i32.const 1)))
        (local.set $out (call $begin (i32.const 32)))
        (call $put (i32.const 240) (i32.const 8))
        (call $int (global.get $k))
        (call $byte (i32.const 125))
        (return (call $end (local.get $out)))))
    (local.set $it (call $next))
    (if (i32.ne (call $kind (local.get $it)) (i32.const 1)) (then (return (local.get $it))))
    (local.set $at (call $find (call $payload (local.get $it)) (call $len (local.get $it)) (i32.const 220) (i32.const 8)))
    (if (i32.ge_s (local.get $at) (i32.const 0))
      (then
        (global.set $left
          (call $atoi (i32.add (i32.add (call $payload (local.get $it)) (local.get $at)) (i32.const 8))))
        (global.set $k (i32.const 0))))
    (br $l))
  (unreachable))
