CREATE TABLE t (id INTEGER);
/* never closed;
