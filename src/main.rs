//! The `hs-platform` command: parse, initialise telemetry, load the
//! configuration, run.

use std::collections::BTreeSet;
use std::io::Read;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use hs_platform::app::{Application, shutdown_signal};
use hs_platform::config::{self, Config, Setting, Source};
use secrecy::SecretString;

#[derive(Parser)]
#[command(name = "hs-platform", version, about = "The hs-platform service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default). Every setting is an environment
    /// variable, listed below with its default and meaning.
    Serve,
    /// Print the effective configuration (every variable, its value and
    /// where it came from; secrets redacted) and check it: exits non-zero,
    /// naming the variable, when it is invalid.
    CheckConfig,
    /// Apply database migrations and exit.
    Migrate,
    /// Create an admin account. The password comes from ADMIN_PASSWORD or,
    /// when unset, from standard input. An existing account is refused unless
    /// --promote-existing is given.
    CreateAdmin {
        #[arg(long)]
        email: String,
        /// Make an existing account with this email admin (anyone may have
        /// registered it first: check it is yours). It gets the given
        /// password and all its sessions are ended.
        #[arg(long)]
        promote_existing: bool,
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
    hs_platform::sys::tune_allocator();
    hs_platform::sys::tune_sqlite();
    let from_dotenv = config::load_dotenv();
    let matches = config::with_variables(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let settings = config::resolve(&matches);
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::CheckConfig = command {
        return check_config(&settings, &from_dotenv);
    }
    let config = Config::from_settings(&settings)?;
    hs_platform::telemetry::init(config.log_format, &config.log_filter);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(run(command, config))
}

/// `check-config`: prints every variable (secrets as `[redacted]`), then
/// validates the whole configuration; an error names the variable.
fn check_config(settings: &[Setting], from_dotenv: &BTreeSet<String>) -> anyhow::Result<()> {
    let width = settings.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in settings {
        let source = match s.source {
            Source::Environment if from_dotenv.contains(&s.name) => ".env",
            Source::Environment => "environment",
            Source::CommandLine => "command line",
            Source::Default => "default",
            Source::Unset => "",
        };
        println!("{:width$}  {source:<12}  {}", s.name, s.shown());
    }
    let config = Config::from_settings(settings)?;
    if config.data_dir_explicit && !config.data_dir.is_dir() {
        anyhow::bail!(
            "DATA_DIR: {} does not exist or is not a directory (a DATA_DIR set explicitly is not created)",
            config.data_dir.display()
        );
    }
    println!("configuration is valid");
    Ok(())
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    hs_platform::init_crypto();
    match command {
        Command::CheckConfig => unreachable!("check-config runs before the runtime starts"),
        Command::Serve => {
            let app = Application::build(config).await?;
            hs_platform::sys::release_startup_memory();
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
        Command::CreateAdmin {
            email,
            promote_existing,
        } => {
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
            let created =
                hs_platform::app::create_admin(&config, &db, &email, password, promote_existing)
                    .await;
            db.close().await;
            let id = created?;
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
