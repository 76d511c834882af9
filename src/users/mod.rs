//! Accounts: sign-up, profiles with usage statistics, updates, admin
//! bootstrap.

pub mod db;
pub mod model;
pub mod password;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use moka::sync::Cache;
use secrecy::SecretString;

use self::model::{
    Checks, Email, Password, Role, SignUp, UpdateUser, User, UserFilter, UserProfile, parse_name,
    parse_object,
};
use crate::config::Config;
use crate::db::Db;
use crate::error::{AppError, Result, conflict_on_unique};
use crate::ids::UserId;
use crate::sessions::auth::{AuthCache, Principal};
use crate::time::Timestamp;

/// How long a computed profile (with statistics) is served from memory.
/// Changes to the user invalidate it at once; statistics may lag this much.
pub const PROFILE_TTL: Duration = Duration::from_secs(5);

/// The users domain's service. Its routes take it as their state, cloned
/// for every request (the hot authenticated read among them), so it is one
/// `Arc`.
#[derive(Clone)]
pub struct Users(Arc<Handles>);

/// What [`Users`] holds.
pub struct Handles {
    db: Db,
    pub hasher: password::Hasher,
    auth: AuthCache,
    profiles: Cache<UserId, Arc<UserProfile>>,
}

impl std::ops::Deref for Users {
    type Target = Handles;
    fn deref(&self) -> &Handles {
        &self.0
    }
}

impl Users {
    pub fn new(db: Db, hasher: password::Hasher, auth: AuthCache) -> Self {
        Self(Arc::new(Handles {
            db,
            hasher,
            auth,
            profiles: Cache::builder()
                .max_capacity(50_000)
                .time_to_live(PROFILE_TTL)
                .build(),
        }))
    }

    /// With the password hasher the configuration asks for.
    pub fn from_config(db: Db, config: &Config, auth: AuthCache) -> anyhow::Result<Self> {
        let hasher = password::Hasher::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.password_hash_concurrency,
        )?;
        Ok(Self::new(db, hasher, auth))
    }

    #[tracing::instrument(skip_all)]
    pub async fn sign_up(&self, req: SignUp) -> Result<User> {
        let mut checks = Checks::default();
        let email = checks.take(Email::parse(&req.email));
        let password = checks.take(Password::parse("password", req.password));
        let name = match &req.name {
            Some(n) => checks.take(parse_name(n)),
            None => None,
        };
        let preferences = match &req.preferences {
            Some(v) => checks.take(parse_object("preferences", v)),
            None => Some("{}".to_string()),
        };
        let metadata = match &req.metadata {
            Some(v) => checks.take(parse_object("metadata", v)),
            None => Some("{}".to_string()),
        };
        checks.finish()?;
        let (Some(email), Some(password), Some(preferences), Some(metadata)) =
            (email, password, preferences, metadata)
        else {
            return Err(anyhow::anyhow!("validated sign-up lost a field").into());
        };
        let hash = self.hasher.hash(password.0).await?;
        let id = UserId::generate();
        let mut tx = self.db.begin_write().await?;
        let row = db::insert(
            &mut tx,
            &db::NewUserRow {
                id: &id,
                email: email.as_str(),
                password_hash: &hash,
                name: name.as_deref(),
                role: Role::User,
                preferences: &preferences,
                metadata: &metadata,
            },
        )
        .await
        .map_err(|e| conflict_on_unique(e, "an account with this email already exists"))?;
        tx.commit().await?;
        Ok(row.into())
    }

    /// The profile of `user_id` as seen by `caller` (404 for other users').
    pub async fn profile(&self, caller: &Principal, user_id: &UserId) -> Result<Arc<UserProfile>> {
        if !caller.can_see(user_id) {
            return Err(AppError::NotFound);
        }
        if let Some(p) = self.profiles.get(user_id) {
            return Ok(p);
        }
        let mut conn = self.db.reader.acquire().await?;
        let user = db::find(&mut conn, user_id)
            .await?
            .ok_or(AppError::NotFound)?;
        let stats = db::stats(&mut conn, user_id, Timestamp::now()).await?;
        let profile = Arc::new(UserProfile {
            user: user.into(),
            stats,
        });
        self.profiles.insert(user_id.clone(), profile.clone());
        Ok(profile)
    }

    /// Accounts newest first, searched by email or name (admins only; the
    /// route checks the role). Answers up to `limit` rows.
    pub async fn list(&self, filter: &UserFilter, limit: i64) -> Result<Vec<User>> {
        if filter.q.as_ref().is_some_and(|q| q.chars().count() > 254) {
            return Err(AppError::validation("q", "at most 254 characters"));
        }
        let pattern = filter.q.as_deref().and_then(model::contains_pattern);
        let mut conn = self.db.reader.acquire().await?;
        let rows = db::list(
            &mut conn,
            pattern.as_deref(),
            filter.role.map(Role::as_str),
            filter.cursor.as_deref(),
            limit,
        )
        .await?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    #[tracing::instrument(skip_all, fields(user_id))]
    pub async fn update(
        &self,
        caller: &Principal,
        user_id: &UserId,
        req: UpdateUser,
    ) -> Result<User> {
        if !caller.can_see(user_id) {
            return Err(AppError::NotFound);
        }
        if req.role.is_some() && !caller.is_admin() {
            return Err(AppError::Problem {
                status: axum::http::StatusCode::FORBIDDEN,
                code: "forbidden",
                message: "only an admin can change a role".into(),
            });
        }
        let mut checks = Checks::default();
        let name = req.name.as_deref().and_then(|n| checks.take(parse_name(n)));
        let preferences = req
            .preferences
            .as_ref()
            .and_then(|v| checks.take(parse_object("preferences", v)));
        let metadata = req
            .metadata
            .as_ref()
            .and_then(|v| checks.take(parse_object("metadata", v)));
        let new_password = match req.password {
            Some(p) => checks.take(Password::parse("password", p)),
            None => None,
        };
        let needs_current = new_password.is_some() && caller.user_id == *user_id;
        if needs_current && req.current_password.is_none() {
            checks.0.push(model::FieldError::new(
                "currentPassword",
                "is required to change the password",
            ));
        }
        checks.finish()?;

        if needs_current {
            let stored = {
                let mut conn = self.db.reader.acquire().await?;
                db::password_hash(&mut conn, user_id).await?
            };
            let current = req
                .current_password
                .unwrap_or_else(|| SecretString::from(""));
            if !self.hasher.verify(current, stored).await? {
                return Err(AppError::Problem {
                    status: axum::http::StatusCode::FORBIDDEN,
                    code: "wrong_password",
                    message: "the current password is wrong".into(),
                });
            }
        }
        let new_hash = match new_password {
            Some(p) => Some(self.hasher.hash(p.0).await?),
            None => None,
        };
        let now = Timestamp::now();
        let mut tx = self.db.begin_write().await?;
        let promoted = match req.role {
            Some(Role::Admin) => db::find(&mut tx, user_id)
                .await?
                .is_some_and(|u| Role::from_db(&u.role) != Role::Admin),
            _ => false,
        };
        let row = db::update(
            &mut tx,
            user_id,
            &db::UserChanges {
                name: name.as_deref(),
                preferences: preferences.as_deref(),
                metadata: metadata.as_deref(),
                role: req.role,
                password_hash: new_hash.as_deref(),
            },
            now,
        )
        .await?
        .ok_or(AppError::NotFound)?;
        if new_hash.is_some() {
            crate::sessions::db::revoke_all_for_user(&mut tx, user_id, now).await?;
        }
        if promoted {
            let ended = crate::sessions::db::end_all_for_user(&mut tx, user_id).await?;
            tracing::warn!(%user_id, by = %caller.user_id, ended_sessions = ended, "account promoted to admin; its sessions were ended");
        } else if new_hash.is_some() || req.role.is_some() {
            crate::sessions::db::log_invalidation(&mut tx, Some(user_id), None).await?;
        }
        tx.commit().await?;
        self.profiles.invalidate(user_id);
        if new_hash.is_some() || req.role.is_some() {
            self.auth.forget_user(user_id);
        }
        Ok(row.into())
    }

    /// Forgets a cached profile (its statistics changed in a way the user
    /// should see at once).
    /// Cached profiles (maintenance): counts them, and drops them all when
    /// `apply` (they are rebuilt on the next read).
    pub fn purge_profiles(&self, apply: bool) -> u64 {
        self.profiles.run_pending_tasks();
        let n = self.profiles.entry_count();
        if apply {
            self.profiles.invalidate_all();
            self.profiles.run_pending_tasks();
        }
        n
    }

    pub fn invalidate_profile(&self, user_id: &UserId) {
        self.profiles.invalidate(user_id);
    }

    /// Creates an admin account; used by start-up bootstrap and the
    /// `create-admin` command. An existing account with this email (which
    /// anyone could have registered first) is refused unless
    /// `promote_existing`: then it becomes admin with this password and every
    /// session it had is ended (deleted, and forgotten by every process).
    pub async fn ensure_admin(
        &self,
        email: &str,
        password: SecretString,
        promote_existing: bool,
    ) -> anyhow::Result<UserId> {
        let email =
            Email::parse(email).map_err(|e| anyhow::anyhow!("admin email {}", e.message))?;
        let password = Password::parse("password", password)
            .map_err(|e| anyhow::anyhow!("admin password {}", e.message))?;
        let hash = self
            .hasher
            .hash(password.0)
            .await
            .map_err(|e| anyhow::anyhow!("failed to hash the admin password: {e}"))?;
        let mut tx = self.db.begin_write().await?;
        let existing = db::credentials_by_email(&mut tx, email.as_str()).await?;
        if existing.is_some() && !promote_existing {
            return Err(AccountExists.into());
        }
        let id = db::upsert_admin(
            &mut tx,
            &UserId::generate(),
            email.as_str(),
            &hash,
            Timestamp::now(),
        )
        .await
        .context("failed to store the admin account")?;
        if existing.is_some() {
            let ended = crate::sessions::db::end_all_for_user(&mut tx, &id).await?;
            tracing::warn!(user_id = %id, ended_sessions = ended, "existing account promoted to admin; its sessions were ended");
        }
        tx.commit().await?;
        self.auth.forget_user(&id);
        self.profiles.invalidate(&id);
        Ok(id)
    }

    /// At start-up: creates the first admin from ADMIN_EMAIL/ADMIN_PASSWORD
    /// when there is no admin yet. An existing account with that email is
    /// never promoted (its owner may be whoever signed up first): the
    /// service says so loudly and starts without an admin.
    pub async fn bootstrap_admin(
        &self,
        email: Option<&str>,
        password: Option<&SecretString>,
    ) -> anyhow::Result<()> {
        let (Some(email), Some(password)) = (email, password) else {
            return Ok(());
        };
        let exists = {
            let mut conn = self.db.reader.acquire().await?;
            db::admin_exists(&mut conn).await?
        };
        if exists {
            tracing::debug!("an admin exists; ADMIN_EMAIL bootstrap skipped");
            return Ok(());
        }
        match self.ensure_admin(email, password.clone(), false).await {
            Ok(_) => {
                tracing::info!(%email, "created the first admin from ADMIN_EMAIL");
                Ok(())
            }
            Err(e) if e.is::<AccountExists>() => {
                tracing::error!(
                    %email,
                    "ADMIN_EMAIL names an account that already exists (anyone may have \
                     registered it): it was NOT made admin and no admin was created; check \
                     that the account is yours, then run `hs-platform create-admin --email \
                     <email> --promote-existing`"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Throwaway accounts of the load tester: role user, an email under
/// [`TEST_ACCOUNT_DOMAIN`], a password hash no known password matches.
impl Users {
    /// Creates a test account (the caller names it, e.g.
    /// `loadtest-<testId>-<i>@loadtest.invalid`).
    #[tracing::instrument(skip(self))]
    pub async fn create_test_account(&self, email: &str, name: &str) -> anyhow::Result<UserId> {
        anyhow::ensure!(
            email.ends_with(TEST_ACCOUNT_DOMAIN),
            "a test account's email ends with {TEST_ACCOUNT_DOMAIN}"
        );
        let hash = self.hasher.unusable_hash();
        let id = UserId::generate();
        let mut tx = self.db.begin_write().await?;
        db::insert(
            &mut tx,
            &db::NewUserRow {
                id: &id,
                email,
                password_hash: &hash,
                name: Some(name),
                role: Role::User,
                preferences: "{}",
                metadata: r#"{"purpose":"loadtest"}"#,
            },
        )
        .await
        .context("failed to create a test account")?;
        tx.commit().await?;
        Ok(id)
    }

    /// Test accounts whose email starts with `prefix`: (id, email).
    pub async fn test_accounts(&self, prefix: &str) -> anyhow::Result<Vec<(UserId, String)>> {
        let mut conn = self.db.reader.acquire().await?;
        Ok(db::test_accounts(&mut conn, prefix, TEST_ACCOUNT_DOMAIN).await?)
    }

    /// Deletes a test account with its sessions (and, by their foreign
    /// keys, its file rows); every process forgets its cached sessions.
    /// Accounts outside [`TEST_ACCOUNT_DOMAIN`] or with another role are
    /// left alone.
    #[tracing::instrument(skip(self))]
    pub async fn delete_test_account(&self, user_id: &UserId) -> anyhow::Result<bool> {
        let mut tx = self.db.begin_write().await?;
        crate::sessions::db::end_all_for_user(&mut tx, user_id).await?;
        let deleted = db::delete_test_account(&mut tx, user_id, TEST_ACCOUNT_DOMAIN).await?;
        tx.commit().await?;
        self.profiles.invalidate(user_id);
        self.auth.forget_user(user_id);
        Ok(deleted)
    }
}

/// The email domain of test accounts (reserved: `.invalid` never resolves).
pub const TEST_ACCOUNT_DOMAIN: &str = "@loadtest.invalid";

/// `ensure_admin` refused an email that already has an account.
#[derive(Debug, thiserror::Error)]
#[error(
    "an account with this email already exists and was not made admin (anyone may have \
     registered it); if it is yours, run again with --promote-existing: it then becomes admin \
     with the given password and all its sessions are ended"
)]
pub struct AccountExists;
