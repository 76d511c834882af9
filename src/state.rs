//! The application state: cheap-to-clone handles, built once, and each
//! domain's service cut from them. Handlers take their domain's service
//! (`State<Users>`, `State<Files>`, ...) through the `FromRef` impls below;
//! only `app`, this module and `http` name `AppState`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ai::{AiService, Chat};
use crate::analytics::Analytics;
use crate::config::Config;
use crate::db::Db;
use crate::files::resolver::Resolver;
use crate::files::{FileService, Files};
use crate::health::detailed::Checks;
use crate::health::probe::Probe;
use crate::http::ratelimit::RateLimits;
use crate::jobs::Queue;
use crate::jobs::runner::Runner;
use crate::loadtest::{LoadTesting, LoadTests};
use crate::maintenance::Maintenance;
use crate::monitoring::{Monitor, Monitoring};
use crate::sessions::Sessions;
use crate::sessions::auth::AuthCache;
use crate::users::Users;

/// Cloned for every request (each extractor and middleware that takes the
/// state gets its own clone), so it is one `Arc`: a clone is one atomic
/// increment, not one per handle (profiling showed per-field clones and
/// drops taking a quarter of the CPU of a cheap request). A handler's
/// `State<ItsService>` clones only that service.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The handles themselves, then each domain's service.
pub struct Services {
    pub config: Arc<Config>,
    pub db: Db,
    /// The Claude API client, its circuit breaker and limits.
    pub ai: AiService,
    pub auth: AuthCache,
    pub users: Users,
    pub jobs: Queue,
    pub health: Probe,
    /// Request log, error tracking, live statistics, response cache (see
    /// `monitoring`).
    pub monitor: Monitor,
    /// `RATE_LIMIT_PER_MINUTE` and `AI_RATE_LIMIT_PER_MINUTE` per client.
    pub limits: Arc<RateLimits>,
    /// Cancelled when the service begins to shut down.
    pub shutdown: CancellationToken,
    /// Every background task (workers, and short tasks that outlive their
    /// request, such as ledger writes and alert webhooks) runs under this
    /// one tracker; shutdown waits for it.
    pub tasks: TaskTracker,
    /// Random per process: the built-in load tester sends it in the
    /// `x-hs-loadtest` header (`<secret>:<testId>`) so that its requests are
    /// recognised (exempt from rate limits, tagged in the request log).
    pub loadtest_secret: Arc<str>,
    /// The address the listener is bound to (set by `app` once bound): the
    /// load tester's only target.
    pub bound_addr: Arc<OnceLock<SocketAddr>>,
    // The domains' services, each with exactly the handles it needs.
    pub sessions: Sessions,
    pub chat: Chat,
    /// Storage, renderers and the shared browser are `files.files`.
    pub files: Files,
    pub checks: Checks,
    pub monitoring: Monitoring,
    pub analytics: Analytics,
    pub loadtest: LoadTesting,
    pub maintenance: Maintenance,
    pub runner: Runner,
}

impl AppState {
    /// The state with the system resolver.
    pub async fn build(
        config: Config,
        db: Db,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        Self::build_with_resolver(config, db, shutdown, Resolver::system()).await
    }

    /// `resolver` answers every name the screenshot browser may reach (the
    /// request check and the egress proxy).
    pub async fn build_with_resolver(
        config: Config,
        db: Db,
        shutdown: CancellationToken,
        resolver: Resolver,
    ) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let auth = AuthCache::new(db.clone());
        auth.skip_past_invalidations().await?;
        let users = Users::from_config(db.clone(), &config, auth.clone())?;
        let monitor = Monitor::new(&config);
        let limits = Arc::new(RateLimits::new(
            config.rate_limit_per_minute,
            config.ai_rate_limit_per_minute,
        ));
        let tasks = TaskTracker::new();
        let ai = AiService::new(&config, db.clone(), monitor.clone(), tasks.clone())?;
        let jobs = Queue::new(db.clone(), config.clone());
        let health = Probe::new();
        let loadtest_secret: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        let bound_addr: Arc<OnceLock<SocketAddr>> = Arc::default();

        let sessions = Sessions {
            db: db.clone(),
            config: config.clone(),
            users: users.clone(),
            auth: auth.clone(),
            backoff: crate::sessions::backoff::LoginBackoff::default(),
        };
        let chat = Chat {
            db: db.clone(),
            config: config.clone(),
            ai: ai.clone(),
            jobs: jobs.clone(),
        };
        let files = Files {
            db: db.clone(),
            config: config.clone(),
            files: FileService::new(&config, resolver)?,
            users: users.clone(),
            jobs: jobs.clone(),
        };
        let checks = Checks {
            db: db.clone(),
            config: config.clone(),
            ai: ai.clone(),
            files: files.files.clone(),
            cache: monitor.cache().clone(),
        };
        let monitoring = Monitoring {
            db: db.clone(),
            config: config.clone(),
            monitor: monitor.clone(),
            health: health.clone(),
            limits: limits.clone(),
            auth: auth.clone(),
            loadtest_secret: loadtest_secret.clone(),
            tasks: tasks.clone(),
        };
        let analytics = Analytics {
            db: db.clone(),
            cache: monitor.cache().clone(),
            storage_limits: files.files.limits(),
        };
        let loadtest = LoadTesting {
            db: db.clone(),
            config: config.clone(),
            jobs: jobs.clone(),
            sessions: sessions.clone(),
            users: users.clone(),
            files: files.clone(),
            loadtests: LoadTests::default(),
            loadtest_secret: loadtest_secret.clone(),
            bound_addr: bound_addr.clone(),
        };
        let maintenance = Maintenance {
            db: db.clone(),
            config: config.clone(),
            jobs: jobs.clone(),
            auth: auth.clone(),
            users: users.clone(),
            sessions: sessions.clone(),
            monitoring: monitoring.clone(),
            files: files.clone(),
        };
        let runner = Runner {
            jobs: jobs.clone(),
            db: db.clone(),
            config: config.clone(),
            monitor: monitor.clone(),
        };
        Ok(Self(Arc::new(Services {
            config,
            db,
            ai,
            auth,
            users,
            jobs,
            health,
            monitor,
            limits,
            shutdown,
            tasks,
            loadtest_secret,
            bound_addr,
            sessions,
            chat,
            files,
            checks,
            monitoring,
            analytics,
            loadtest,
            maintenance,
            runner,
        })))
    }
}

/// `impl FromRef<AppState> for T`: the handler's `State<T>` clones this field.
macro_rules! from_ref {
    ($($field:ident: $ty:ty),* $(,)?) => {
        $(impl FromRef<AppState> for $ty {
            fn from_ref(state: &AppState) -> Self {
                state.$field.clone()
            }
        })*
    };
}

from_ref! {
    auth: AuthCache,
    users: Users,
    sessions: Sessions,
    jobs: Queue,
    chat: Chat,
    files: Files,
    health: Probe,
    checks: Checks,
    monitoring: Monitoring,
    analytics: Analytics,
    loadtest: LoadTesting,
    maintenance: Maintenance,
}
