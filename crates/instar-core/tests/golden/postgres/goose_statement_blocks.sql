-- +goose Up
CREATE TABLE t (id INT);
-- +goose StatementBegin
CREATE FUNCTION f() RETURNS trigger AS $$
BEGIN
  NEW.id := NEW.id + 1; RETURN NEW;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE INDEX t_id ON t (id);
