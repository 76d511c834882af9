//! Building and running the service: open the database (migrating it), build
//! the state, spawn the background workers, bind, serve, and shut down
//! gracefully (one CancellationToken for everything, one TaskTracker to wait
//! for the workers, then the database is closed cleanly).

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::db::Db;
use crate::files::resolver::Resolver;
use crate::jobs::Registry;
use crate::state::AppState;

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Cancelled once the server has finished its last request.
    drained: CancellationToken,
    addr: SocketAddr,
    /// Held while the service runs: `restore` refuses while it is held.
    _lock: crate::maintenance::backup::DataDirLock,
}

impl Application {
    /// Opens everything and binds the listener; nothing is served until
    /// [`Application::run`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_jobs(config, |_| {}).await
    }

    /// Like [`Application::build`], with extra job handlers (tests and
    /// benchmarks register their own kinds here).
    pub async fn build_with_jobs(
        config: Config,
        extra_jobs: impl FnOnce(&mut Registry),
    ) -> anyhow::Result<Self> {
        Self::build_with(config, Resolver::system(), extra_jobs).await
    }

    /// Like [`Application::build_with_jobs`], with the resolver that answers
    /// every name the screenshot browser may reach (the system resolver in
    /// the binary; tests pass one that rebinds).
    pub async fn build_with(
        config: Config,
        resolver: Resolver,
        extra_jobs: impl FnOnce(&mut Registry),
    ) -> anyhow::Result<Self> {
        crate::init_crypto();
        prepare_data_dir(&config)?;
        crate::maintenance::backup::apply_pending_restore(&config).await?;
        let lock = crate::maintenance::backup::DataDirLock::acquire(&config)?;
        let db = Db::open(&config).await?;
        crate::maintenance::backup::check_at_startup(&db, &config).await?;
        let shutdown = CancellationToken::new();
        let state = AppState::build_with_resolver(config, db, shutdown.clone(), resolver).await?;
        state
            .users
            .bootstrap_admin(
                state.config.admin_email.as_deref(),
                state.config.admin_password.as_ref(),
            )
            .await?;

        let bind = SocketAddr::new(state.config.host, state.config.port);
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("failed to bind {bind} (HOST, PORT)"))?;
        let addr = listener.local_addr()?;
        let _ = state.bound_addr.set(addr);

        // Every background task runs under this one tracker and stops on
        // `shutdown`.
        let tracker = state.tasks.clone();
        crate::health::spawn_workers(&state.health, &state.db, &tracker, shutdown.clone());
        crate::sessions::spawn_workers(&state.sessions, &tracker, shutdown.clone());
        let mut registry = Registry::default();
        crate::jobs::register_jobs(&mut registry);
        crate::ai::register_jobs(&mut registry, &state.ai);
        crate::files::register_jobs(&mut registry, &state.files);
        crate::loadtest::register_jobs(&mut registry, &state.loadtest);
        crate::maintenance::register_jobs(&mut registry, &state.maintenance);
        extra_jobs(&mut registry);
        let drained = CancellationToken::new();
        crate::jobs::spawn_runner(
            &state.runner,
            registry,
            &tracker,
            shutdown.clone(),
            drained.clone(),
        );
        crate::ai::spawn_workers(&state.ai, &tracker, shutdown.clone());
        crate::files::spawn_workers(&state.files, &tracker, shutdown.clone());
        crate::monitoring::spawn_workers(&state.monitoring, &tracker, shutdown.clone());
        crate::loadtest::spawn_workers(&state.loadtest, &tracker, shutdown.clone());
        crate::maintenance::spawn_workers(&state.maintenance, &tracker, shutdown.clone());
        // Built here, not in `run`: the OpenAPI document's garbage is then
        // freed before `sys::release_startup_memory` (about 6 MiB of idle RSS).
        let router = crate::http::router(state.clone());

        Ok(Self {
            listener,
            router,
            state,
            tracker,
            shutdown,
            drained,
            addr,
            _lock: lock,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancelling this token shuts the service down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains requests,
    /// stops the workers and closes the database.
    pub async fn run(self) -> anyhow::Result<()> {
        let config = self.state.config.clone();
        tracing::info!(addr = %self.addr, "hs-platform listening");
        crate::http::server::serve(
            self.listener,
            self.router,
            crate::http::server::ConnectionLimits {
                idle_timeout: config.header_read_timeout,
                max_connections: config.max_connections,
            },
            self.shutdown.clone(),
            config.shutdown_grace,
        )
        .await;
        self.shutdown.cancel();
        self.drained.cancel();
        self.tracker.close();
        if tokio::time::timeout(config.shutdown_grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background workers did not stop within the grace period");
        }
        self.state.db.close().await;
        tracing::info!("hs-platform stopped");
        Ok(())
    }
}

/// `create-admin`: makes the admin account `email` (promoting an existing
/// account only when `promote_existing`) through the users domain alone,
/// without starting the service. A running service forgets the promoted
/// account's sessions within a second (`auth_invalidations`).
pub async fn create_admin(
    config: &Config,
    db: &Db,
    email: &str,
    password: secrecy::SecretString,
    promote_existing: bool,
) -> anyhow::Result<crate::ids::UserId> {
    let auth = crate::sessions::auth::AuthCache::new(db.clone());
    let users = crate::users::Users::from_config(db.clone(), config, auth)?;
    users.ensure_admin(email, password, promote_existing).await
}

/// The data directory must exist and be writable; anything else fails
/// start-up with a clear message. It is not created: a missing directory
/// usually means a persistent disk that is not mounted, and writing to the
/// ephemeral file system instead would lose the data at the next deploy.
/// Its subdirectories are created when missing.
pub fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    if !config.data_dir_explicit {
        // The default ./data is created so that `cargo run` needs no set-up.
        std::fs::create_dir_all(dir)
            .with_context(|| format!("DATA_DIR: cannot create {}", dir.display()))?;
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => anyhow::bail!("DATA_DIR: {} is not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "DATA_DIR: {} does not exist (is the persistent disk mounted? for local runs: mkdir -p {})",
            dir.display(),
            dir.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("DATA_DIR: cannot access {}", dir.display()));
        }
    }
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok")
        .with_context(|| format!("DATA_DIR: {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    for sub in [config.files_dir(), config.backups_dir()] {
        std::fs::create_dir_all(&sub)
            .with_context(|| format!("DATA_DIR: cannot create {}", sub.display()))?;
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
