-- The incident's message as it last read (its Block Kit body): the resolution edits it in place
-- (the header turns to "Resolved", the buttons go).
ALTER TABLE threads ADD COLUMN root TEXT;
