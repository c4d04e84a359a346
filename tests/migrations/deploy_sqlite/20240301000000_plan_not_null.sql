CREATE TABLE dep_accounts_new (id BIGINT NOT NULL, plan VARCHAR(16) NOT NULL);
INSERT INTO dep_accounts_new (id, plan) SELECT id, plan FROM dep_accounts;
DROP TABLE dep_accounts;
ALTER TABLE dep_accounts_new RENAME TO dep_accounts;
