;; Shared by the test modules (the test harness wraps each module's body with
;; the `lens.next` import, a memory and this prelude). Memory layout: 0 holds a
;; nil item (a zero byte), 8 an end-of-stream item, 16 an error item, 100-511
;; the modules' constants, 512 scratch digits, 4096 on the heap (a bump
;; allocator: a fresh instance per stream starts it over).
(data (i32.const 8) "\7f")
(data (i32.const 16) "\ff\1a\00\00\00arguments need src and dst")
(global $heap (mut i32) (i32.const 4096))
(func $malloc (param $n i32) (result i32)
  (local $p i32) (local $need i32)
  (local.set $p (global.get $heap))
  (global.set $heap (i32.add (local.get $p) (local.get $n)))
  (local.set $need (i32.sub (global.get $heap) (i32.shl (memory.size) (i32.const 16))))
  (if (i32.gt_s (local.get $need) (i32.const 0))
    (then
      (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $need) (i32.const 16)) (i32.const 1))) (i32.const -1))
        (then unreachable))))
  (local.get $p))
(func $kind (param $it i32) (result i32) (i32.load8_s (local.get $it)))
(func $len (param $it i32) (result i32) (i32.load offset=1 align=1 (local.get $it)))
(func $payload (param $it i32) (result i32) (i32.add (local.get $it) (i32.const 5)))
;; The index of needle (nd, nn bytes) in hay (h, hn bytes), or -1.
(func $find (param $h i32) (param $hn i32) (param $nd i32) (param $nn i32) (result i32)
  (local $i i32) (local $j i32)
  (loop $outer
    (if (i32.gt_s (i32.add (local.get $i) (local.get $nn)) (local.get $hn))
      (then (return (i32.const -1))))
    (local.set $j (i32.const 0))
    (block $miss
      (loop $inner
        (if (i32.ge_s (local.get $j) (local.get $nn)) (then (return (local.get $i))))
        (br_if $miss
          (i32.ne
            (i32.load8_u (i32.add (local.get $h) (i32.add (local.get $i) (local.get $j))))
            (i32.load8_u (i32.add (local.get $nd) (local.get $j)))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $inner)))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $outer))
  (i32.const -1))
;; Building a JSON item: $begin reserves it, $put/$byte/$int append, $end sets its length.
(global $w (mut i32) (i32.const 0))
(func $begin (param $cap i32) (result i32)
  (local $p i32)
  (local.set $p (call $malloc (i32.add (local.get $cap) (i32.const 5))))
  (i32.store8 (local.get $p) (i32.const 1))
  (global.set $w (i32.add (local.get $p) (i32.const 5)))
  (local.get $p))
(func $put (param $src i32) (param $n i32)
  (memory.copy (global.get $w) (local.get $src) (local.get $n))
  (global.set $w (i32.add (global.get $w) (local.get $n))))
(func $byte (param $b i32)
  (i32.store8 (global.get $w) (local.get $b))
  (global.set $w (i32.add (global.get $w) (i32.const 1))))
(func $int (param $v i32)
  (local $n i32)
  (if (i32.lt_s (local.get $v) (i32.const 0))
    (then
      (call $byte (i32.const 45))
      (local.set $v (i32.sub (i32.const 0) (local.get $v)))))
  (loop $digits
    (i32.store8 (i32.add (i32.const 512) (local.get $n))
      (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
    (local.set $n (i32.add (local.get $n) (i32.const 1)))
    (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
    (br_if $digits (i32.ne (local.get $v) (i32.const 0))))
  (loop $out
    (local.set $n (i32.sub (local.get $n) (i32.const 1)))
    (call $byte (i32.load8_u (i32.add (i32.const 512) (local.get $n))))
    (br_if $out (i32.gt_s (local.get $n) (i32.const 0)))))
(func $end (param $p i32) (result i32)
  (i32.store offset=1 align=1 (local.get $p)
    (i32.sub (global.get $w) (i32.add (local.get $p) (i32.const 5))))
  (local.get $p))
;; The integer at address a (an optional '-', then digits); $after is where it ends.
(global $after (mut i32) (i32.const 0))
(func $atoi (param $a i32) (result i32)
  (local $neg i32) (local $v i32) (local $c i32)
  (if (i32.eq (i32.load8_u (local.get $a)) (i32.const 45))
    (then
      (local.set $neg (i32.const 1))
      (local.set $a (i32.add (local.get $a) (i32.const 1)))))
  (block $done
    (loop $l
      (local.set $c (i32.sub (i32.load8_u (local.get $a)) (i32.const 48)))
      (br_if $done (i32.gt_u (local.get $c) (i32.const 9)))
      (local.set $v (i32.add (i32.mul (local.get $v) (i32.const 10)) (local.get $c)))
      (local.set $a (i32.add (local.get $a) (i32.const 1)))
      (br $l)))
  (global.set $after (local.get $a))
  (if (result i32) (local.get $neg)
    (then (i32.sub (i32.const 0) (local.get $v)))
    (else (local.get $v))))
