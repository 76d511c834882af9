//! Backup downloads: a succeeded backup opened by its id (never by a path
//! from the request) with its SHA-256, and the checksum itself.

use std::fs::File;
use std::path::Path;

use anyhow::Context;

use super::Maintenance;
use super::db;
use crate::error::AppError;

/// Hex SHA-256 of a file, read in 64 KiB blocks (blocking: call it from
/// `spawn_blocking`).
pub fn sha256_of(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file =
        File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("failed to read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A succeeded backup opened for download, with its checksum.
pub struct Download {
    pub file: tokio::fs::File,
    pub size: u64,
    pub file_name: String,
    pub sha256: String,
}

/// Opens a backup for download by its id. The path comes only from the
/// `backups` row (a bare file name inside `DATA_DIR/backups`), never from
/// the request. A backup made before checksums were stored gets its checksum
/// computed (streamed, off the async threads) and recorded now. Unknown ids
/// answer 404; a backup that is running, failed, rotated out or missing from
/// disk answers 409 `backup_unavailable`.
pub async fn open_download(state: &Maintenance, id: &str) -> crate::error::Result<Download> {
    let row = {
        let mut conn = state.db.reader.acquire().await?;
        db::backup_by_id(&mut conn, id)
            .await?
            .ok_or(AppError::NotFound)?
    };
    if row.status != "succeeded" {
        return Err(unavailable(&row.status));
    }
    let bare = Path::new(&row.file_name).file_name() == Some(std::ffi::OsStr::new(&row.file_name));
    if !bare {
        return Err(anyhow::anyhow!("backup {id} has an unsafe file name").into());
    }
    let path = state.config.backups_dir().join(&row.file_name);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(backup = %row.file_name, "a succeeded backup has no file");
            return Err(unavailable("missing from disk"));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context("failed to open a backup")
                .into());
        }
    };
    let size = file
        .metadata()
        .await
        .context("failed to read a backup's size")?
        .len();
    let sha256 = match row.sha256 {
        Some(s) => s,
        None => {
            let p = path.clone();
            let sum = tokio::task::spawn_blocking(move || sha256_of(&p))
                .await
                .context("checksum task panicked")??;
            let mut tx = state.db.begin_write().await?;
            db::set_backup_sha256(&mut tx, id, &sum).await?;
            tx.commit().await?;
            sum
        }
    };
    Ok(Download {
        file,
        size,
        file_name: row.file_name,
        sha256,
    })
}

fn unavailable(status: &str) -> AppError {
    AppError::Problem {
        status: axum::http::StatusCode::CONFLICT,
        code: "backup_unavailable",
        message: format!("this backup is {status}; only a succeeded backup can be downloaded"),
    }
}
