DROP INDEX idx_messages_conversation_timestamp;
CREATE INDEX idx_messages_conversation_timestamp ON messages (conversation_id, "timestamp");
