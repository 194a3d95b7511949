ALTER TYPE mood ADD VALUE 'ecstatic';
INSERT INTO t (a, b) VALUES ('it''s; fine', E'escaped \' quote; here');
INSERT INTO "odd;name" ("col;1") VALUES ($1);
CREATE INDEX CONCURRENTLY idx_users_email ON users (lower(email));
CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO log VALUES (1); INSERT INTO log VALUES (2));
SELECT 'trailing statement without semicolon'
