CREATE FUNCTION add(a integer, b integer) RETURNS integer
    LANGUAGE SQL
    BEGIN ATOMIC
        SELECT a + b;
        SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;
    END;
CREATE TABLE after_atomic (id int);
