//! Authentication of bearer tokens, answered from memory on the hot path.
//!
//! A token is 32 bytes from the OS CSPRNG, base64url; only its SHA-256 is
//! stored. Lookups are cached by that hash (positive and negative answers),
//! and every change that must take effect at once (logout, password change,
//! role change) invalidates the cache explicitly. Those changes are also
//! recorded in `auth_invalidations`, which every running process reads every
//! [`INVALIDATION_POLL`], so that a session ended by another process (the
//! `create-admin` command, a second instance) stops working here within about
//! a second. Last-activity times are collected in memory and flushed to
//! SQLite every few seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::sync::Cache;
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use std::sync::Mutex;

use crate::db::Db;
use crate::error::AppError;
use crate::ids::{SessionId, UserId};
use crate::time::Timestamp;
use crate::users::model::Role;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Owners and admins may see an object; everyone else is told it does not
    /// exist (404), never that it is someone else's.
    pub fn can_see(&self, owner_id: &UserId) -> bool {
        self.is_admin() || self.user_id == *owner_id
    }
}

#[derive(Clone)]
struct Entry {
    live: Option<Live>,
}

#[derive(Clone)]
struct Live {
    principal: Principal,
    expires_at: Timestamp,
    last_touch_ms: Arc<AtomicI64>,
}

/// How often last-activity times are written.
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(5);

/// How often `auth_invalidations` is read for other processes' changes.
pub const INVALIDATION_POLL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct AuthCache {
    db: Db,
    cache: Cache<String, Entry>,
    touched: Arc<Mutex<HashMap<SessionId, Timestamp>>>,
    /// Bumped by every invalidation: a lookup that raced with one does not
    /// cache what it read.
    generation: Arc<AtomicU64>,
    /// The last `auth_invalidations.seq` applied.
    applied: Arc<AtomicI64>,
}

/// A new random token and its stored hash.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the OS random number generator failed");
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    (token, hash)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl AuthCache {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(300))
                .support_invalidation_closures()
                .build(),
            touched: Arc::default(),
            generation: Arc::default(),
            applied: Arc::default(),
        }
    }

    /// Starts reading invalidations after the newest one (the cache is empty,
    /// so older ones concern nothing in it). Called before serving.
    pub async fn skip_past_invalidations(&self) -> anyhow::Result<()> {
        let mut conn = self.db.reader.acquire().await?;
        let seq = super::db::last_invalidation(&mut conn).await?;
        self.applied.store(seq, Ordering::Release);
        Ok(())
    }

    /// Forgets what other processes (or this one) recorded since the last
    /// call; returns how many records were applied.
    pub async fn apply_invalidations(&self) -> anyhow::Result<usize> {
        let mut applied = 0;
        loop {
            let since = self.applied.load(Ordering::Acquire);
            let rows = {
                let mut conn = self.db.reader.acquire().await?;
                super::db::invalidations_since(&mut conn, since, 500).await?
            };
            let Some(last) = rows.last().map(|r| r.seq) else {
                return Ok(applied);
            };
            applied += rows.len();
            for row in &rows {
                if let Some(user_id) = &row.user_id {
                    self.forget_user(user_id);
                }
                if let Some(hash) = &row.token_hash {
                    self.forget_token_hash(hash);
                }
            }
            self.applied.store(last, Ordering::Release);
        }
    }

    /// The principal for a token, or `None` when it is unknown, expired or
    /// revoked.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, AppError> {
        if token.len() > 256 {
            return Ok(None);
        }
        let hash = hash_token(token);
        let now = Timestamp::now();
        let entry = match self.cache.get(&hash) {
            Some(e) => e,
            None => {
                let generation = self.generation.load(Ordering::Acquire);
                let mut conn = self.db.reader.acquire().await?;
                let row = super::db::find_live_by_token_hash(&mut conn, &hash, now).await?;
                let entry = Entry {
                    live: row.map(|r| Live {
                        principal: Principal {
                            user_id: r.user_id,
                            session_id: r.session_id,
                            role: Role::from_db(&r.role),
                        },
                        expires_at: r.expires_at,
                        last_touch_ms: Arc::new(AtomicI64::new(0)),
                    }),
                };
                if self.generation.load(Ordering::Acquire) == generation {
                    self.cache.insert(hash, entry.clone());
                }
                entry
            }
        };
        let Some(live) = entry.live else {
            return Ok(None);
        };
        if live.expires_at <= now {
            return Ok(None);
        }
        self.note_activity(&live, now);
        Ok(Some(live.principal))
    }

    fn note_activity(&self, live: &Live, now: Timestamp) {
        let now_ms = now.unix_ms();
        let last = live.last_touch_ms.load(Ordering::Relaxed);
        if now_ms - last < 1000 * TOUCH_INTERVAL.as_secs() as i64 {
            return;
        }
        live.last_touch_ms.store(now_ms, Ordering::Relaxed);
        if let Ok(mut map) = self.touched.lock() {
            map.insert(live.principal.session_id.clone(), now);
        }
    }

    /// Writes the collected last-activity times.
    pub async fn flush_activity(&self) -> anyhow::Result<()> {
        let batch: Vec<(SessionId, Timestamp)> = match self.touched.lock() {
            Ok(mut map) => map.drain().collect(),
            Err(_) => return Ok(()),
        };
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().await?;
        for (id, seen) in &batch {
            super::db::touch(&mut tx, id, *seen).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets one token (logout).
    pub fn forget_token_hash(&self, hash: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate(hash);
    }

    /// Cached answers that can no longer authenticate anyone (unknown tokens
    /// and sessions that expired since they were cached): counts them, and
    /// drops them when `apply`. Live sessions stay cached.
    pub fn purge_dead(&self, apply: bool) -> u64 {
        let now = Timestamp::now();
        let is_dead = move |e: &Entry| e.live.as_ref().is_none_or(|l| l.expires_at <= now);
        self.cache.run_pending_tasks();
        let n = self.cache.iter().filter(|(_, e)| is_dead(e)).count() as u64;
        if apply {
            let _ = self.cache.invalidate_entries_if(move |_, e| is_dead(e));
            self.cache.run_pending_tasks();
        }
        n
    }

    /// Forgets every cached session of a user (password or role change).
    pub fn forget_user(&self, user_id: &UserId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let user_id = user_id.clone();
        let _ = self.cache.invalidate_entries_if(move |_, e| {
            e.live
                .as_ref()
                .is_some_and(|l| l.principal.user_id == user_id)
        });
    }
}
