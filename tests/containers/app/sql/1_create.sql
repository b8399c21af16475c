CREATE TABLE containers_ok (x int);
