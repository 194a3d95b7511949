CREATE TABLE log (msg TEXT);
CREATE TRIGGER t_ai AFTER INSERT ON t
BEGIN
    INSERT INTO log VALUES ('inserted; ' || NEW.id);
    UPDATE counters SET n = CASE WHEN n IS NULL THEN 1 ELSE n + 1 END;
END;
CREATE TABLE [bracket;name] ("quoted;col" INTEGER);
