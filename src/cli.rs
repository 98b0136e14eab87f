//! The command line: `cortex serve` (the default), `migrate`, `token`, `print-schema`,
//! `import-sqlite`, `backup`, `restore`, `backups`.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::server::{self, DatabaseHandle};

/// Cortex: a GraphQL API server over PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "cortex", version, about)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply pending migrations (or revert them all with --down) and exit.
    Migrate {
        /// Revert every migration instead.
        #[arg(long)]
        down: bool,
    },
    /// Mint a bearer token with the configured secret (JWT_SECRET, or the local one).
    Token {
        /// The `sub` claim: the user's `userId`.
        #[arg(long)]
        user_id: String,
        /// The `name` claim.
        #[arg(long)]
        name: Option<String>,
        /// The `email` claim.
        #[arg(long)]
        email: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = crate::auth::DEFAULT_TOKEN_TTL_SECS)]
        ttl: i64,
    },
    /// Print the GraphQL schema (SDL, sorted) — what schema.graphql holds.
    PrintSchema,
    /// Import a Cortex Core (Phase 4) SQLite database: users, workspaces,
    /// conversations, messages. Safe to re-run and to resume after a crash.
    ImportSqlite {
        /// The SQLite file.
        path: std::path::PathBuf,
        /// Read and validate everything and print the report, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rows per batch; each batch commits with its id mappings.
        #[arg(long, default_value_t = crate::import::DEFAULT_BATCH_SIZE as u64,
              value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_size: u64,
        /// Batches written at once, each on its own connection and transaction
        /// [default: one per core, at most 4].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=16))]
        jobs: Option<u64>,
        /// `bulk` drops the secondary indexes and foreign keys while loading and
        /// rebuilds them at the end (for an empty or nearly empty database);
        /// `incremental` keeps them [default: bulk when the file adds at least 50,000
        /// messages and at least as many as the database holds].
        #[arg(long, value_enum)]
        mode: Option<crate::import::ImportMode>,
        /// Test hook: exit abruptly after this many committed batches.
        #[arg(long, hide = true)]
        abort_after_batches: Option<usize>,
        /// Test hook: exit abruptly after a bulk import rebuilt this many objects.
        #[arg(long, hide = true)]
        abort_after_rebuilt: Option<usize>,
    },
    /// Dump the database (pg_dump, custom format) to `DIR/{db}_{YYYYmmdd_HHMMSS}.dump`.
    Backup {
        /// Folder for the backup [default: BACKUP_DIR, or ./backups].
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Replace the database's contents with a backup (pg_restore, one transaction).
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
        /// Do not ask for confirmation (required when there is no terminal to ask on).
        #[arg(long)]
        yes: bool,
    },
    /// List the backups, newest first, with size and time.
    Backups {
        /// Folder of the backups [default: BACKUP_DIR, or ./backups].
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

/// Parses the command line, runs the command, and turns failures into one clear line.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_tracing() {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG`; `LOG_FORMAT=json` writes one JSON
/// object per line for log pipelines.
fn init_tracing() -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let config = crate::config::LogConfig::from_env()?;
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    Ok(())
}

async fn dispatch(cli: Cli) -> Result<()> {
    let config = Config::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::PrintSchema => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
        Command::Token {
            user_id,
            name,
            email,
            ttl,
        } => {
            if user_id.is_empty() || ttl <= 0 {
                anyhow::bail!("--user-id must not be empty and --ttl must be positive");
            }
            let secret = match &config.jwt_secret {
                Some(s) => s.expose().as_bytes().to_vec(),
                None => crate::auth::load_or_create_local_secret(&config.embedded.data_dir)?,
            };
            let auth = crate::auth::Authenticator::new(&secret);
            println!(
                "{}",
                auth.mint(&user_id, name.as_deref(), email.as_deref(), ttl)
            );
            Ok(())
        }
        Command::Serve => server::serve(config).await,
        Command::ImportSqlite {
            path,
            dry_run,
            batch_size,
            jobs,
            mode,
            abort_after_batches,
            abort_after_rebuilt,
        } => {
            let options = crate::import::ImportOptions {
                dry_run,
                batch_size: batch_size as usize,
                jobs: jobs.map_or_else(crate::import::default_jobs, |n| n as usize),
                mode,
                abort_after_batches,
                abort_after_rebuilt,
            };
            // The file is checked before anything starts or is written.
            let source = crate::import::open_source(path).await?;
            let handle = DatabaseHandle::open(&config).await?;
            let result = async {
                crate::db::migrations::run_pending(&handle.url).await?;
                let report = crate::import::run(source, &handle.url, &options).await?;
                print!("{report}");
                anyhow::Ok(())
            }
            .await;
            let closed = handle.close().await;
            result.and(closed)
        }
        Command::Backup { dir } => {
            let dir = dir.unwrap_or_else(|| config.backup_dir.clone());
            let handle = DatabaseHandle::open(&config).await?;
            let result = crate::backup::backup(&handle.url, &dir).await;
            let closed = handle.close().await;
            let file = result?;
            closed?;
            println!(
                "backed up to {} ({})",
                file.path.display(),
                human_size(file.size)
            );
            Ok(())
        }
        Command::Restore { file, yes } => {
            let handle = DatabaseHandle::open(&config).await?;
            let result = async {
                let database = crate::backup::database_name(&handle.url)?;
                if !yes {
                    confirm_restore(&database, &file)?;
                }
                crate::backup::restore(&handle.url, &file).await?;
                println!("restored database {database} from {}", file.display());
                anyhow::Ok(())
            }
            .await;
            let closed = handle.close().await;
            result.and(closed)
        }
        Command::Backups { dir } => {
            let dir = dir.unwrap_or_else(|| config.backup_dir.clone());
            let files = crate::backup::list(&dir)?;
            if files.is_empty() {
                println!("no backups in {}", dir.display());
            }
            for file in files {
                let time: chrono::DateTime<chrono::Local> = file.modified.into();
                println!(
                    "{}  {:>10}  {}",
                    time.format("%Y-%m-%d %H:%M:%S"),
                    human_size(file.size),
                    file.path.display()
                );
            }
            Ok(())
        }
        Command::Migrate { down } => {
            let handle = DatabaseHandle::open(&config).await?;
            let result = migrate(&handle.url, down).await;
            let closed = handle.close().await;
            result.and(closed)
        }
    }
}

/// `cortex migrate`: first rebuilds what a stopped bulk import dropped (a migration
/// must meet the tables whole), then applies or reverts the migrations.
async fn migrate(url: &str, down: bool) -> Result<()> {
    if let Some(rebuilt) = crate::import::bulk::repair(url).await? {
        println!(
            "rebuilt {} indexes and foreign keys an interrupted bulk import had dropped ({:.1} s)",
            rebuilt.objects,
            rebuilt.elapsed.as_secs_f64()
        );
    }
    if down {
        let reverted = crate::db::migrations::revert_all(url).await?;
        println!(
            "reverted {} migration(s): {}",
            reverted.len(),
            reverted.join(", ")
        );
    } else {
        let applied = crate::db::migrations::run_pending(url).await?;
        if applied.is_empty() {
            println!("the database is up to date");
        } else {
            println!(
                "applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            );
        }
    }
    Ok(())
}

/// Asks on the terminal before a restore replaces the database's contents; with no
/// terminal, refuses (pass `--yes`).
fn confirm_restore(database: &str, file: &std::path::Path) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "restore replaces every row of database {database}: pass --yes to confirm (there is no terminal to ask on)"
        );
    }
    print!(
        "This replaces every row of database {database} with {}. Type `yes` to go on: ",
        file.display()
    );
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        anyhow::bail!("restore cancelled; nothing was changed");
    }
    Ok(())
}

/// 1536 → "1.5 KiB".
fn human_size(bytes: u64) -> String {
    let mut size = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if size < 1024.0 || unit == "GiB" {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{size:.1} {unit}")
            };
        }
        size /= 1024.0;
    }
    unreachable!()
}
