20250121093000_add_users.sql
CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);