//! Builds the service from its configuration and runs it: pool, Kafka
//! clients, HTTP server, and the shutdown order.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::access::{AccessError, Scope};
use crate::config::{ArchiveCommand, Cli, Command, Config, TokenCommand};
use crate::db::{self, DbError, MigrationReport};
use crate::http;
use crate::jobs::{self, JobsError, SupervisorHandle};
use crate::kafka::{Cluster, KafkaClientError, TopicSettings};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Kafka(#[from] KafkaClientError),
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cli(#[from] crate::cli::CliError),
    #[error("could not generate a random secret: {0}")]
    Random(String),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("{0}")]
    Usage(String),
}

/// Runs the command the command line asked for.
pub async fn run(cli: Cli) -> Result<(), StartupError> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(cli.config).await?;
            app.run_until(shutdown_signal()).await;
            // Export the spans of the last requests before the process exits
            // (the exporter blocks: keep it off the runtime's workers).
            let _ = tokio::task::spawn_blocking(crate::telemetry::shutdown).await;
            Ok(())
        }
        Command::Migrate => {
            let report = migrate(&cli.config).await?;
            if report.applied.is_empty() {
                println!("database is up to date");
            }
            for migration in &report.applied {
                println!("applied {migration}");
            }
            Ok(())
        }
        Command::Archive {
            command: ArchiveCommand::Replay { job, into },
        } => {
            let replayed = crate::cli::replay_archive(&cli.config, &job, into).await?;
            println!(
                "{} objects, {} records read: {} stored, {} already stored, {} dead letters",
                replayed.objects,
                replayed.read,
                replayed.stored,
                replayed.duplicates,
                replayed.dead_letters
            );
            Ok(())
        }
        Command::Token {
            command: TokenCommand::New { name, scope },
        } => {
            let scope = Scope::parse(&scope).unwrap_or(Scope::Read);
            crate::access::check_name(&name).map_err(StartupError::Usage)?;
            let (token, digest) =
                crate::access::new_token().map_err(|e| StartupError::Random(e.to_string()))?;
            // The token on stdout's first line, the setting on the second;
            // what to do with them on stderr, so scripts can read stdout.
            println!("{token}");
            println!("{}={name}:{}", scope.variable(), digest.hex());
            eprintln!(
                "insikt: give the first line to the client (it is shown only now; the service \
                 keeps only its SHA-256). Add the second to the service's environment (join \
                 several {scope} tokens with commas), or `{scope} {name}:{}` to INSIKT_TOKENS_FILE.",
                digest.hex()
            );
            Ok(())
        }
        Command::UploadAirports { file, url, token } => {
            let uploaded =
                crate::cli::upload_airports(&cli.config, &file, url.as_deref(), token.as_deref())
                    .await?;
            println!(
                "inserted {}, updated {}",
                uploaded.inserted, uploaded.updated
            );
            Ok(())
        }
        Command::Demo {
            force,
            url,
            seed,
            residents,
            statements,
            wait,
            token,
        } => {
            let options = crate::cli::demo::DemoOptions {
                url,
                force,
                plan: crate::demo::Plan {
                    seed,
                    residents: residents.into(),
                    statements,
                    ..crate::demo::Plan::default()
                },
                timeout: wait,
                token,
                ..crate::cli::demo::DemoOptions::default()
            };
            crate::cli::demo::demo(&cli.config, &options, &mut std::io::stdout()).await?;
            Ok(())
        }
    }
}

/// Creates the database if needed and applies the embedded migrations.
pub async fn migrate(config: &Config) -> Result<MigrationReport, StartupError> {
    let report = db::migrate(&config.database_url).await?;
    tracing::info!(
        created_database = report.created_database,
        applied = report.applied.len(),
        "migrations done"
    );
    Ok(report)
}

/// The service, bound to its address and ready to serve.
pub struct Application {
    listener: TcpListener,
    state: http::State,
}

impl Application {
    /// Migrates (unless `no_migrate`), builds the clients and binds the listener.
    pub async fn build(mut config: Config) -> Result<Self, StartupError> {
        // Bad token settings stop the start, before anything else is done.
        let tokens = config.tokens()?;
        if tokens.is_open() && config.require_tokens {
            return Err(StartupError::Usage(
                "INSIKT_REQUIRE_TOKENS is set but no read or write token is configured \
                 (INSIKT_READ_TOKENS, INSIKT_WRITE_TOKENS, INSIKT_TOKENS_FILE): not starting open"
                    .to_owned(),
            ));
        }
        if tokens.is_open() {
            tracing::warn!(
                "no read or write token is configured (INSIKT_READ_TOKENS, INSIKT_WRITE_TOKENS, \
                 INSIKT_TOKENS_FILE): running OPEN, anyone who reaches the port reads and \
                 changes personal data; configure tokens outside development (docs/access.md)"
            );
        }
        tracing::info!(
            read = tokens.count(Scope::Read),
            write = tokens.count(Scope::Write),
            admin = tokens.count(Scope::Admin),
            open = tokens.is_open(),
            "access tokens configured"
        );
        if !config.no_migrate {
            migrate(&config).await?;
        }
        if config.secret.is_none() {
            tracing::warn!(
                "INSIKT_SECRET is unset: using a random signing key; \
                 confirmation links will not survive a restart"
            );
            config.secret = Some(random_secret()?);
        }
        let instance_id = config.instance_id();
        let pool = db::pool(&config.database_url, config.db_pool_size)?;
        let kafka = Cluster::connect(&config.kafka_brokers, &format!("insikt-{instance_id}"))?
            .with_topic_settings(TopicSettings {
                replication: config.topic_replication,
                min_insync: config.topic_min_insync,
            });
        let supervisor = SupervisorHandle::start(
            jobs::Settings::from_config(&config),
            pool.clone(),
            kafka.clone(),
        )
        .await?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartupError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let insights = Arc::new(crate::insights::Insights::new(
            pool.clone(),
            usize::try_from(config.insights_memory).unwrap_or(usize::MAX),
        ));
        // The jobs tell the insights what they stored (jobs know nothing of
        // insights; this is where the two meet).
        let fed = Arc::downgrade(&insights);
        supervisor.on_folded(move |import_id| {
            if let Some(insights) = fed.upgrade() {
                insights.folded(import_id);
            }
        });
        Ok(Self {
            listener,
            state: http::State::new(config, pool, kafka, supervisor, tokens, insights),
        })
    }

    /// The bound address (tests bind port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish
    /// for up to the configured shutdown timeout.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let addr = self.local_addr();
        let timeout = self.state.config.shutdown_timeout();
        let stopping = Arc::new(Notify::new());
        let notify = Arc::clone(&stopping);
        let server = http::server::serve(
            self.listener,
            http::router(&self.state),
            self.state.config.header_timeout,
            async move {
                shutdown.await;
                tracing::info!("shutting down: finishing in-flight requests");
                notify.notify_one();
            },
        );
        tracing::info!(%addr, instance = %self.state.config.instance_id(), "insikt listening");
        tokio::select! {
            () = server => tracing::info!("server stopped"),
            () = async {
                stopping.notified().await;
                tokio::time::sleep(timeout).await;
            } => tracing::warn!(?timeout, "shutdown timed out; dropping open connections"),
        }
        // After the HTTP server: every job finishes its current batch.
        self.state.supervisor.shutdown().await;
        self.state.pool.close();
    }
}

fn random_secret() -> Result<String, StartupError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StartupError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
