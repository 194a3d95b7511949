-- A trigger function with a $$ body full of semicolons; and a tagged quote.
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";

CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now(); -- a comment; with a semicolon
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_updated BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE FUNCTION tagged() RETURNS text AS $body$ SELECT 'a;b $$ not the end'; $body$ LANGUAGE sql;

/* block comment; /* nested; */ still comment; */
SELECT 1;
