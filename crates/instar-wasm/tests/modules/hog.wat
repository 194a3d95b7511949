;; Grows its memory 1 MiB at a time, forever.
(func (export "transform") (result i32)
  (loop $l (drop (memory.grow (i32.const 16))) (br $l))
  (unreachable))
