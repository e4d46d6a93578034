-- Why an object failed, as a kind (dlengine.errors.ErrorCode: "not-found",
-- "checksum", "disk-full", ...) beside the message in objects.error, so
-- status can group failures by kind.
ALTER TABLE objects ADD COLUMN error_code TEXT;
