//! PostgreSQL: the connection pool, embedded migrations and small helpers
//! shared by the domain modules. Nothing here knows about HTTP.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

pub use deadpool_postgres::{Client, Pool, Transaction};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// How long to wait for a connection before reporting the database unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Key of the advisory lock that serialises migrations of concurrent instances.
const MIGRATION_LOCK_KEY: i64 = 0x696e_7369_6b74; // "insikt"

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("the database URL names no database")]
    NoDatabaseName,
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// A write guard found that another writer took over the row (e.g. a job
    /// now owned by another instance); nothing was written.
    #[error("stale writer: {0}")]
    Stale(String),
    /// A job's stored offsets are not those its batch continues from (a
    /// PostgreSQL crash lost commits): nothing written; the job reloads.
    #[error("offsets moved: {0}")]
    OffsetsMoved(String),
    /// The database holds a value no migration writes.
    #[error("unexpected data: {0}")]
    Corrupt(String),
    /// A write that had to follow another one, which did not commit; rolled back.
    #[error("not committed: {0}")]
    NotCommitted(String),
}

impl DbError {
    /// The SQLSTATE of a PostgreSQL error, if this is one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            DbError::Postgres(e) => e.code(),
            _ => None,
        }
    }

    /// True when PostgreSQL could not be reached at all (as opposed to a query failing).
    /// Only a closed connection, an I/O failure (refused, reset, timed out) or
    /// the pool's own timeout counts: a query bug must not pose as an outage.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Pool(e) => pool_unreachable(e),
            DbError::Postgres(e) => postgres_unreachable(e),
            _ => false,
        }
    }
}

/// Whether `error`, or an error it came from, says PostgreSQL could not be
/// reached (as [`DbError::is_unavailable`]), whichever type carries it.
pub fn is_outage(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        let unavailable = if let Some(e) = error.downcast_ref::<DbError>() {
            e.is_unavailable()
        } else if let Some(e) = error.downcast_ref::<tokio_postgres::Error>() {
            postgres_unreachable(e)
        } else if let Some(e) = error.downcast_ref::<deadpool_postgres::PoolError>() {
            pool_unreachable(e)
        } else {
            false
        };
        if unavailable {
            return true;
        }
        current = error.source();
    }
    false
}

fn postgres_unreachable(e: &tokio_postgres::Error) -> bool {
    e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

fn pool_unreachable(e: &deadpool_postgres::PoolError) -> bool {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => postgres_unreachable(e),
        PoolError::Timeout(_) | PoolError::Closed => true,
        _ => false,
    }
}

/// Parses a `postgres://` URL (or key=value string) into a connection config.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, DbError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| DbError::InvalidUrl(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("insikt");
    }
    Ok(config)
}

/// Builds the pool. Connections are opened lazily, so this succeeds while
/// PostgreSQL is down (`serve --no-migrate` relies on that).
pub fn pool(url: &str, max_size: usize) -> Result<Pool, DbError> {
    let config = parse_url(url)?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| DbError::InvalidUrl(e.to_string()))
}

/// This database's deployment identity, made by migration V9.
pub async fn deployment_id(client: &Client) -> Result<uuid::Uuid, DbError> {
    let row = client
        .query_one("SELECT id::text FROM deployment", &[])
        .await?;
    let id: &str = row.try_get(0)?;
    uuid::Uuid::parse_str(id).map_err(|e| DbError::Corrupt(format!("deployment id {id:?}: {e}")))
}

/// Checks that PostgreSQL answers a trivial query.
pub async fn ping(pool: &Pool) -> Result<(), DbError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, DbError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "postgres connection closed");
        }
    });
    Ok(client)
}

/// Quotes an SQL identifier (for DDL, which takes no parameters).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the URL's database unless it exists, connecting to `postgres` to do so.
pub async fn create_database_if_missing(url: &str) -> Result<bool, DbError> {
    let config = parse_url(url)?;
    let name = config
        .get_dbname()
        .ok_or(DbError::NoDatabaseName)?
        .to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect(&admin).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    match client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
        .await
    {
        Ok(()) => {
            tracing::info!(database = %name, "created database");
            Ok(true)
        }
        // Another instance created it between our check and our CREATE.
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub created_database: bool,
    pub applied: Vec<String>,
}

/// Creates the database if needed and applies the embedded migrations, holding
/// an advisory lock so that instances starting together migrate one at a time.
pub async fn migrate(url: &str) -> Result<MigrationReport, DbError> {
    migrate_to(url, None).await
}

/// [`migrate`] up to and including migration `version` only (all when
/// `None`): for tests of what a later migration does to earlier data.
pub async fn migrate_to(url: &str, version: Option<i32>) -> Result<MigrationReport, DbError> {
    let created_database = create_database_if_missing(url).await?;
    let mut client = connect(&parse_url(url)?).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let mut runner = embedded::migrations::runner();
    if let Some(version) = version {
        runner = runner.set_target(refinery::Target::Version(version));
    }
    let outcome = runner.run_async(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let applied = outcome?
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect();
    Ok(MigrationReport {
        created_database,
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connections_are_unavailable() {
        let pool = pool("postgres://postgres@127.0.0.1:1/none", 1).unwrap();
        let error = ping(&pool).await.unwrap_err();
        assert!(error.is_unavailable(), "{error:?}");
        assert!(!DbError::NoDatabaseName.is_unavailable());
        // Found through the errors that carry it, boxed as an actor's.
        let wrapped = crate::jobs::JobsError::from(error);
        assert!(is_outage(&wrapped));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(wrapped);
        assert!(is_outage(boxed.as_ref()));
        assert!(!is_outage(&DbError::Stale("moved".into())));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("insikt"), "\"insikt\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn urls_parse_with_timeouts() {
        let config = parse_url("postgres://postgres@127.0.0.1:5432/insikt").unwrap();
        assert_eq!(config.get_dbname(), Some("insikt"));
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert!(matches!(
            parse_url("postgres://[::"),
            Err(DbError::InvalidUrl(_))
        ));
    }
}
