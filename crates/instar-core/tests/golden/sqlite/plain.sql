-- Leading comment; ignored
PRAGMA foreign_keys = ON;

CREATE TABLE users (
    id INTEGER PRIMARY KEY, -- inline; comment
    email TEXT NOT NULL
);
INSERT INTO users (email) VALUES ('a@b.c'); INSERT INTO users (email) VALUES ('d@e.f');
