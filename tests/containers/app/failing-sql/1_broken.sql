-- always fails: the table is not there
ALTER TABLE no_such_table ADD COLUMN x int;
