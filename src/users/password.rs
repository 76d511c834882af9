//! Password hashing with argon2id, off the async threads and bounded: at most
//! `PASSWORD_HASH_CONCURRENCY` hashes run at once and at most
//! [`MAX_WAITING`] wait, so a login burst can neither starve other requests
//! of CPU nor pile up memory (each hash holds `ARGON2_MEMORY_KIB`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::error::AppError;

/// How many hash requests may wait for a slot before new ones get 503.
pub const MAX_WAITING: usize = 256;

#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    slots: Semaphore,
    waiting: AtomicUsize,
    /// A real hash of a random password, verified against when the email is
    /// unknown so that both failures take the same time.
    dummy_hash: String,
}

impl Hasher {
    pub fn new(memory_kib: u32, iterations: u32, concurrency: usize) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let dummy_password = uuid::Uuid::new_v4().to_string();
        let dummy_hash = hash_blocking(&params, &dummy_password).context("failed to hash")?;
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                slots: Semaphore::new(concurrency),
                waiting: AtomicUsize::new(0),
                dummy_hash,
            }),
        })
    }

    /// A hash no known password matches (the dummy hash's password is
    /// random and forgotten): for accounts nobody signs in to with a
    /// password, such as the load tester's, without hashing again.
    pub fn unusable_hash(&self) -> String {
        self.inner.dummy_hash.clone()
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, AppError> {
        let params = self.inner.params.clone();
        self.run(move || hash_blocking(&params, password.expose_secret()))
            .await
    }

    /// Verifies `password` against `hash`, or against the dummy hash when
    /// there is no account, so that the answer takes the same time.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, AppError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.inner.dummy_hash.clone());
        let ok = self
            .run(move || {
                match Argon2::default()
                    .verify_password(password.expose_secret().as_bytes(), hash.as_str())
                {
                    Ok(()) => Ok(true),
                    Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                    Err(e) => Err(anyhow::anyhow!("stored password hash is unusable: {e}")),
                }
            })
            .await?;
        Ok(ok && known)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, AppError> {
        let inner = &self.inner;
        if inner.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            inner.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(AppError::Unavailable {
                code: "overloaded",
                message: "too many logins at once; try again shortly".into(),
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        let permit = inner.slots.acquire().await;
        inner.waiting.fetch_sub(1, Ordering::AcqRel);
        let _permit = permit.context("password hasher closed")?;
        let out = tokio::task::spawn_blocking(work)
            .await
            .context("password hashing task failed")??;
        Ok(out)
    }
}

fn hash_blocking(params: &Params, password: &str) -> anyhow::Result<String> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("failed to hash password: {e}"))
}
