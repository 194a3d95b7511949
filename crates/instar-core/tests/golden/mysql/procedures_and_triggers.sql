# MySQL comment; with a semicolon
CREATE TABLE accounts (id INT PRIMARY KEY, balance DECIMAL(10,2)) ENGINE=InnoDB;

CREATE PROCEDURE transfer(IN a INT, IN b INT, IN amt DECIMAL(10,2))
BEGIN
    DECLARE x INT DEFAULT 0;
    IF amt > 0 THEN
        UPDATE accounts SET balance = balance - amt WHERE id = a;
        UPDATE accounts SET balance = balance + amt WHERE id = b;
    ELSEIF amt < 0 THEN
        SET x = 1;
    END IF;
    WHILE x < 3 DO
        SET x = x + 1;
    END WHILE;
    CASE x WHEN 1 THEN SELECT 'one'; ELSE SELECT 'other'; END CASE;
END;

CREATE TRIGGER accounts_bi BEFORE INSERT ON accounts FOR EACH ROW
BEGIN
    SET NEW.balance = IF(NEW.balance IS NULL, 0, NEW.balance);
    SET NEW.balance = CASE WHEN NEW.balance < 0 THEN 0 ELSE NEW.balance END;
END;
INSERT INTO accounts VALUES (1, 'a\'b;c');
