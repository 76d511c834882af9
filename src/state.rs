//! The application state handed to every handler: cheap-to-clone handles.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::Db;
use crate::health::Probe;
use crate::jobs::Queue;
use crate::sessions::auth::AuthCache;
use crate::users::Users;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub auth: AuthCache,
    pub users: Users,
    pub jobs: Queue,
    pub health: Probe,
    /// Cancelled when the service begins to shut down.
    pub shutdown: CancellationToken,
    /// Random per process: the built-in load tester sends it in the
    /// `x-hs-loadtest` header (`<secret>:<testId>`) so that its requests are
    /// recognised (exempt from rate limits, tagged in the request log).
    pub loadtest_secret: Arc<str>,
    /// The address the listener is bound to (set by `app` once bound): the
    /// load tester's only target.
    pub bound_addr: Arc<OnceLock<SocketAddr>>,
    /// The running load test, if any.
    pub loadtests: crate::loadtest::LoadTests,
}

impl AppState {
    pub async fn build(
        config: Config,
        db: Db,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let auth = AuthCache::new(db.clone());
        let hasher = crate::users::password::Hasher::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.password_hash_concurrency,
        )?;
        let users = Users::new(db.clone(), hasher, auth.clone());
        Ok(Self {
            jobs: Queue::new(db.clone(), config.clone()),
            config,
            db,
            auth,
            users,
            health: Probe::new(),
            shutdown,
            loadtest_secret: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
            bound_addr: Arc::default(),
            loadtests: crate::loadtest::LoadTests::default(),
        })
    }
}
