//! The `hs-platform` command: parse, initialise telemetry, load the
//! configuration, run.

use std::io::Read;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hs_platform::app::{Application, shutdown_signal};
use hs_platform::config::Config;
use secrecy::SecretString;

#[derive(Parser)]
#[command(name = "hs-platform", version, about = "The hs-platform service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Create an admin, or make an existing account admin. The password comes
    /// from ADMIN_PASSWORD or, when unset, from standard input.
    CreateAdmin {
        #[arg(long)]
        email: String,
    },
    /// Write a consistent copy of the live database to PATH (safe while the
    /// service runs; PATH must not exist). The copy is integrity-checked.
    Backup { path: std::path::PathBuf },
    /// Put the backup at PATH in place of the database. Refuses while the
    /// service runs and refuses a backup that fails `integrity_check`; the
    /// replaced database is kept beside it as `*.pre-restore-<time>`.
    Restore {
        path: std::path::PathBuf,
        /// Verify now and restore when the service next starts (for hosts
        /// where the service cannot be stopped, e.g. Render: then restart it).
        #[arg(long)]
        at_next_start: bool,
    },
}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    hs_platform::db::tune_sqlite();
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let config = Config::from_env()?;
    hs_platform::telemetry::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(run(cli, config))
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    hs_platform::init_crypto();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(config).await?;
            release_startup_memory();
            let token = app.shutdown_token();
            tokio::spawn(async move {
                shutdown_signal().await;
                token.cancel();
            });
            app.run().await
        }
        Command::Migrate => {
            let db = hs_platform::db::Db::open(&config).await?;
            db.close().await;
            println!("migrations applied to {}", config.database_path().display());
            Ok(())
        }
        Command::CreateAdmin { email } => {
            let password = match config.admin_password.clone() {
                Some(p) => p,
                None => {
                    let mut buf = String::new();
                    std::io::stdin()
                        .read_to_string(&mut buf)
                        .context("failed to read the password from standard input")?;
                    SecretString::from(buf.trim_end_matches(['\r', '\n']).to_string())
                }
            };
            let db = hs_platform::db::Db::open(&config).await?;
            let id = hs_platform::app::create_admin(&config, &db, &email, password).await?;
            db.close().await;
            println!("admin {email} ready (id {id})");
            Ok(())
        }
        Command::Backup { path } => {
            let written = hs_platform::maintenance::backup::write_backup(&config, &path).await?;
            println!(
                "backup of {} written to {} ({} bytes in {} ms, integrity ok)",
                config.database_path().display(),
                path.display(),
                written.size_bytes,
                written.duration.as_millis()
            );
            Ok(())
        }
        Command::Restore {
            path,
            at_next_start: true,
        } => {
            let src = hs_platform::maintenance::backup::stage_restore(&config, &path).await?;
            println!(
                "{} verified; it replaces the database when the service next starts (restart it now)",
                src.display()
            );
            Ok(())
        }
        Command::Restore { path, .. } => {
            let restored = hs_platform::maintenance::backup::restore(&config, &path).await?;
            println!(
                "restored {} to {} (schema version {})",
                path.display(),
                restored.database.display(),
                restored.schema_version.unwrap_or_default()
            );
            if let Some(prev) = restored.previous {
                println!("the replaced database was kept as {}", prev.display());
            }
            println!(
                "generated files are not in the database backup: restore DATA_DIR/files too (docs/operations.md)"
            );
            Ok(())
        }
    }
}

/// Start-up (migrations, the OpenAPI document, the router) frees a few MiB
/// of small allocations in the middle of the heap, which glibc keeps mapped
/// until asked: hand those pages back before serving.
#[allow(unsafe_code)]
fn release_startup_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it is
    // thread-safe (it takes each arena's lock).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// glibc raises its mmap threshold after the first large free, so the 19 MiB
/// blocks of argon2id hashing would then stay in the heap and RSS would grow
/// by one block per hashing thread. A fixed threshold keeps large blocks
/// mmapped (returned to the OS when freed), and a 4 MiB trim threshold
/// avoids trimming churn after bursts of small frees. (mimalloc was tried:
/// ~25% more requests/s, but twice the RSS, since it keeps freed pages.)
#[allow(unsafe_code)]
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called first
    // thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 * 1024 * 1024);
    }
}
