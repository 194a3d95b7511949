-- +goose Up
-- +goose StatementBegin
CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW
BEGIN
  SET NEW.id = NEW.id + 1;
  IF NEW.id > 10 THEN SET NEW.id = 10; END IF;
END;
-- +goose StatementEnd
SELECT 1;
