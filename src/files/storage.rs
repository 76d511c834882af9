//! The bytes of stored files under `DATA_DIR/files/`: written to a temporary
//! file in `DATA_DIR/files/.tmp/`, synced, renamed to a server-chosen name
//! (a UUID), and the directory synced. No path is ever derived from client
//! input: names come from the database and must look like ours.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

/// Where stored files live.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
    tmp: PathBuf,
}

/// A file that has been put in place.
#[derive(Debug, Clone)]
pub struct Stored {
    pub storage_name: String,
    pub size: u64,
    pub sha256: String,
}

/// Removes a temporary file when dropped unless it was kept: an upload that
/// fails or whose client goes away leaves nothing behind.
pub struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `name` is a storage name this service could have chosen.
pub fn is_storage_name(name: &str) -> bool {
    name.len() == 36 && uuid::Uuid::parse_str(name).is_ok()
}

impl Storage {
    pub fn new(dir: PathBuf) -> anyhow::Result<Self> {
        let tmp = dir.join(".tmp");
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("failed to create {}", tmp.display()))?;
        Ok(Self { dir, tmp })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// The path of a stored file, or None if the name is not one of ours.
    pub fn path_of(&self, storage_name: &str) -> Option<PathBuf> {
        is_storage_name(storage_name).then(|| self.dir.join(storage_name))
    }

    /// A new temporary file (removed on drop unless committed).
    pub fn temp(&self) -> TempFile {
        TempFile {
            path: self
                .tmp
                .join(format!("{}.part", uuid::Uuid::new_v4().simple())),
            armed: true,
        }
    }

    /// Syncs a finished temporary file and renames it to a new storage name.
    pub async fn commit(&self, mut temp: TempFile) -> anyhow::Result<String> {
        let name = uuid::Uuid::new_v4().to_string();
        let dest = self.dir.join(&name);
        let src = temp.path.clone();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            std::fs::File::open(&src)
                .and_then(|f| f.sync_all())
                .context("failed to sync the file")?;
            std::fs::rename(&src, &dest).context("failed to move the file into place")?;
            sync_dir(&dir);
            Ok(())
        })
        .await??;
        temp.disarm();
        Ok(name)
    }

    /// Writes `bytes` as a new stored file.
    pub async fn write(&self, bytes: Vec<u8>) -> anyhow::Result<Stored> {
        let temp = self.temp();
        let path = temp.path.clone();
        let (size, sha256) =
            tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, String)> {
                let mut f = std::fs::File::create(&path)
                    .with_context(|| format!("failed to create {}", path.display()))?;
                f.write_all(&bytes).context("failed to write the file")?;
                f.sync_all().context("failed to sync the file")?;
                Ok((bytes.len() as u64, hex::encode(Sha256::digest(&bytes))))
            })
            .await??;
        let storage_name = self.commit(temp).await?;
        Ok(Stored {
            storage_name,
            size,
            sha256,
        })
    }

    /// Removes a stored file; a missing file is not an error.
    pub async fn remove(&self, storage_name: &str) -> anyhow::Result<()> {
        let Some(path) = self.path_of(storage_name) else {
            return Ok(());
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("failed to remove {}", path.display())),
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuid_names_map_to_paths() {
        let s = Storage {
            dir: PathBuf::from("/data/files"),
            tmp: PathBuf::from("/data/files/.tmp"),
        };
        assert!(s.path_of("../../etc/passwd").is_none());
        assert!(s.path_of("").is_none());
        assert!(s.path_of(".tmp").is_none());
        let id = uuid::Uuid::new_v4().to_string();
        assert_eq!(
            s.path_of(&id).unwrap(),
            PathBuf::from("/data/files").join(&id)
        );
    }
}
