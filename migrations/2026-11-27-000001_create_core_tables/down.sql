DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE workspaces;
DROP TABLE users;
DROP FUNCTION cortex_set_updated_at();
