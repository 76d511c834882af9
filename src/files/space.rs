//! Room on the disk: the storage limits derived at start-up from the disk
//! that holds `DATA_DIR`, the free-space floor below which files and backups
//! are refused before anything is written, and the recognition of a write
//! that met a full disk anyway.
//!
//! Why these defaults: the files are the only part of `DATA_DIR` that
//! tenants can grow at will; the database, its WAL (which can reach the
//! database's size between checkpoints) and `BACKUP_KEEP` backups live on
//! the same disk. So, unless configured, files get at most half of the disk
//! (`STORAGE_QUOTA_BYTES`), one account at most 100 MiB and never more than
//! a tenth of that (`USER_QUOTA_BYTES`), and whatever the quotas say, no
//! file or backup is written while less than 5% of the disk (64 MiB to
//! 1 GiB, `STORAGE_MIN_FREE_BYTES`) is free: that floor is left to the
//! database, which keeps working when files have filled their share.

use std::path::Path;

use anyhow::bail;

use crate::config::Config;
use crate::error::AppError;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The per-user quota when `USER_QUOTA_BYTES` is unset (lowered to a tenth
/// of the storage quota on small disks).
pub const DEFAULT_USER_QUOTA_BYTES: u64 = 100 * MIB;

/// The disk size assumed when it cannot be read (4 GiB: a 2 GiB quota, the
/// service's historical default).
const UNKNOWN_DISK_BYTES: u64 = 4 * GIB;

/// The storage limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of all stored files (and queued job payloads) together.
    pub quota: u64,
    /// Bytes of one account's files and queued job payloads.
    pub user_quota: u64,
    /// Free bytes the disk must keep after a file or backup is written.
    pub min_free: u64,
}

impl Limits {
    /// The limits for a disk of `disk_total` bytes (None: unknown). An
    /// explicit `USER_QUOTA_BYTES` above a tenth of the storage quota is
    /// refused: one account alone must not be able to fill the service.
    pub fn resolve(config: &Config, disk_total: Option<u64>) -> anyhow::Result<Self> {
        let disk = disk_total.unwrap_or(UNKNOWN_DISK_BYTES);
        let quota = config.storage_quota_bytes.unwrap_or(disk / 2);
        let tenth = quota / 10;
        let user_quota = match config.user_quota_bytes {
            Some(q) if q > tenth => bail!(
                "USER_QUOTA_BYTES: {q} is more than a tenth of the storage quota \
                 ({quota} bytes{}); lower it or raise STORAGE_QUOTA_BYTES",
                if config.storage_quota_bytes.is_some() {
                    ""
                } else {
                    ", half of the disk holding DATA_DIR"
                }
            ),
            Some(q) => q,
            None => DEFAULT_USER_QUOTA_BYTES.min(tenth),
        };
        let min_free = config
            .storage_min_free_bytes
            .unwrap_or((disk / 20).clamp(64 * MIB, GIB));
        Ok(Self {
            quota,
            user_quota,
            min_free,
        })
    }
}

/// (available to us, total) bytes of the file system holding `path`.
pub fn disk_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    Ok((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

/// 507 `insufficient_storage` unless writing `incoming` more bytes under
/// `dir` leaves at least `min_free` bytes free. A disk whose free space
/// cannot be read is not refused here (a failed write still is).
pub fn ensure_room(dir: &Path, min_free: u64, incoming: u64) -> Result<(), AppError> {
    if below_floor(dir, min_free, incoming) {
        return Err(AppError::insufficient_storage());
    }
    Ok(())
}

/// Whether writing `incoming` more bytes under `dir` would leave less than
/// `min_free` bytes free (logged when it would).
pub fn below_floor(dir: &Path, min_free: u64, incoming: u64) -> bool {
    match disk_space(dir) {
        Ok((available, _)) if available < min_free.saturating_add(incoming) => {
            tracing::warn!(
                available,
                min_free,
                incoming,
                dir = %dir.display(),
                "write refused: the disk is at its free-space floor (STORAGE_MIN_FREE_BYTES)"
            );
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "failed to read the free disk space");
            false
        }
    }
}

/// The error of a write refused at the floor, as an I/O "storage full" so
/// that it is classified like a write that met a full disk.
pub fn floor_error() -> anyhow::Error {
    anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull))
        .context("refused: the disk is at its free-space floor (STORAGE_MIN_FREE_BYTES)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_map(&map).unwrap()
    }

    #[test]
    fn defaults_leave_half_the_disk_and_a_floor_to_the_database() {
        let l = Limits::resolve(&config(&[]), Some(100 * GIB)).unwrap();
        assert_eq!(l.quota, 50 * GIB);
        assert_eq!(l.user_quota, 100 * MIB);
        assert_eq!(l.min_free, GIB, "5% capped at 1 GiB");

        // Render's 2 GB disk: a tenth of half the disk is just under 100 MiB.
        let l = Limits::resolve(&config(&[]), Some(2_000_000_000)).unwrap();
        assert_eq!(l.quota, 1_000_000_000);
        assert_eq!(l.user_quota, 100_000_000);
        assert_eq!(l.min_free, 100_000_000);

        let l = Limits::resolve(&config(&[]), Some(GIB)).unwrap();
        assert_eq!(l.min_free, 64 * MIB, "at least 64 MiB");
        assert_eq!(l.user_quota, GIB / 20);
    }

    #[test]
    fn explicit_values_win_and_a_user_quota_over_a_tenth_is_refused() {
        let l = Limits::resolve(
            &config(&[
                ("STORAGE_QUOTA_BYTES", "1000"),
                ("STORAGE_MIN_FREE_BYTES", "0"),
            ]),
            Some(100 * GIB),
        )
        .unwrap();
        assert_eq!((l.quota, l.user_quota, l.min_free), (1000, 100, 0));

        let err = Limits::resolve(
            &config(&[("STORAGE_QUOTA_BYTES", "1000"), ("USER_QUOTA_BYTES", "101")]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("USER_QUOTA_BYTES:"), "{err}");
        // The default quota is half of the disk: 10 GiB of 20.
        assert!(
            Limits::resolve(
                &config(&[("USER_QUOTA_BYTES", "2147483648")]),
                Some(20 * GIB)
            )
            .is_err()
        );
    }
}
