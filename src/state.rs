//! The application state handed to every handler: cheap-to-clone handles.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::Db;
use crate::files::FileService;
use crate::health::Probe;
use crate::jobs::Queue;
use crate::sessions::auth::AuthCache;
use crate::users::Users;

/// Cloned for every request (each extractor and middleware that takes the
/// state gets its own clone), so it is one `Arc`: a clone is one atomic
/// increment, not one per handle (profiling showed per-field clones and
/// drops taking a quarter of the CPU of a cheap request).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The handles themselves.
pub struct Services {
    pub config: Arc<Config>,
    pub db: Db,
    /// The Claude API client, its circuit breaker and limits.
    pub ai: crate::ai::AiService,
    pub auth: AuthCache,
    pub users: Users,
    pub jobs: Queue,
    /// Storage, renderers and the shared browser of the files domain.
    pub files: FileService,
    pub health: Probe,
    /// Request log, error tracking, live statistics, rate limits, response
    /// cache (see `monitoring`).
    pub monitor: crate::monitoring::Monitor,
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
        let monitor = crate::monitoring::Monitor::new(&config);
        let ai = crate::ai::AiService::new(&config, monitor.clone())?;
        Ok(Self(Arc::new(Services {
            jobs: Queue::new(db.clone(), config.clone()),
            files: FileService::new(&config)?,
            monitor,
            config,
            db,
            ai,
            auth,
            users,
            health: Probe::new(),
            shutdown,
            loadtest_secret: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
            bound_addr: Arc::default(),
            loadtests: crate::loadtest::LoadTests::default(),
        })))
    }
}
