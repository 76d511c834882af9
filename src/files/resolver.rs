//! Name resolution for everything the screenshot browser may reach: the
//! request check ([`super::ssrf::check`]) and the egress proxy
//! ([`super::egress`]) ask the same [`Resolver`]. It is built once with the
//! service (`Application::build`: the system resolver) and handed down, so
//! that a test can pass a resolver that answers differently each time (DNS
//! rebinding) and production and tests differ only in what is passed in.
//!
//! Lookups are bounded: at most `max_lookups` run at once (a blocking-pool
//! thread each), and waiting for a slot plus the lookup itself has a
//! timeout. A slot is held until the blocking lookup has really returned,
//! so a resolver that hangs cannot pile up threads.

use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

/// A blocking name lookup (`getaddrinfo` for [`SystemLookup`]).
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        Ok((host, port).to_socket_addrs()?.map(|sa| sa.ip()).collect())
    }
}

/// Lookups running at once by default, across every caller.
pub const MAX_LOOKUPS: usize = 4;

/// Waiting for a lookup slot plus the lookup itself, by default.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Lookup`] with its bound and timeout; clone freely (clones share the
/// bound).
#[derive(Clone)]
pub struct Resolver {
    backend: Arc<dyn Lookup>,
    slots: Arc<Semaphore>,
    timeout: Duration,
    lookups: Arc<AtomicU64>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("timeout", &self.timeout)
            .field("lookups", &self.lookups())
            .finish_non_exhaustive()
    }
}

/// The name did not resolve (in time, or at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the host does not resolve")]
pub struct Unresolved;

impl Resolver {
    /// The system resolver with the default bound and timeout.
    pub fn system() -> Self {
        Self::new(Arc::new(SystemLookup), MAX_LOOKUPS, LOOKUP_TIMEOUT)
    }

    pub fn new(backend: Arc<dyn Lookup>, max_lookups: usize, timeout: Duration) -> Self {
        Self {
            backend,
            slots: Arc::new(Semaphore::new(max_lookups.max(1))),
            timeout,
            lookups: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Lookups started so far (for monitoring).
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// One bounded lookup of `host` (a name, not an address literal).
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, Unresolved> {
        let deadline = Instant::now() + self.timeout;
        let permit = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Unresolved)?
            .map_err(|_| Unresolved)?;
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let backend = self.backend.clone();
        let name = host.to_owned();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            backend.lookup(&name, port)
        });
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Ok(ips))) if !ips.is_empty() => Ok(ips),
            _ => Err(Unresolved),
        }
    }
}
