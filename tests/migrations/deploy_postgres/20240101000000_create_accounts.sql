CREATE TABLE dep_accounts (id BIGINT NOT NULL);
INSERT INTO dep_accounts (id) VALUES (1), (2), (3);
