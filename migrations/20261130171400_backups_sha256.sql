-- backups.sha256: hex SHA-256 of the backup file, computed when the backup
-- is written (NULL for backups made before this column existed; the
-- download endpoint computes and stores it on first download). It is sent
-- as `x-checksum-sha256` and `Repr-Digest` by
-- GET /api/maintenance/backups/{backupId}; check a download with
-- `sha256sum <file>`.
ALTER TABLE backups ADD COLUMN sha256 TEXT;
