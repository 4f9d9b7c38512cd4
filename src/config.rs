//! Typed settings from command-line flags and `INSIKT_*` environment variables.
//!
//! Every flag has an environment variable and a default that works on a
//! developer's machine (see `scripts/services.sh`), so `insikt` alone serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// insikt: where the demand for new courses is, by city (and nearby airport),
/// age group and advertising channel.
#[derive(Debug, Parser)]
#[command(name = "insikt", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default when no command is given).
    Serve,
    /// Apply the embedded database migrations, creating the database if needed.
    Migrate,
    /// Upload an airports CSV file to a running insikt (`POST /airports/upload`),
    /// streamed, with a progress bar on a terminal.
    UploadAirports {
        /// The CSV file; a header row is required (see docs/airports.md).
        file: PathBuf,
        /// Base URL of the service [default: http://<listen address>].
        #[arg(long)]
        url: Option<String>,
        /// A bearer token with the write scope, when the service needs one.
        #[arg(long, env = "INSIKT_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Stream a seeded sample import (residents, statements, a few bad
    /// records) through a running insikt and print the demand it answers.
    /// Skipped when the service already has imports, unless `--force`.
    Demo {
        /// Add another sample import even when imports exist.
        #[arg(long)]
        force: bool,
        /// Base URL of the service [default: http://<listen address>].
        #[arg(long)]
        url: Option<String>,
        /// Seed of the sample (the same seed gives the same sample).
        #[arg(long, default_value_t = 2019)]
        seed: u64,
        /// Residents in the sample import (1 to 10,000).
        #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u16).range(1..=10_000))]
        residents: u16,
        /// Distinct statements (a fiftieth more are sent twice).
        #[arg(long, default_value_t = 20_000)]
        statements: usize,
        /// Longest wait for the service to be ready and for its job to store
        /// the sample (e.g. `5m`).
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        wait: Duration,
        /// A bearer token with the write scope, when the service needs one.
        #[arg(long, env = "INSIKT_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// The archive of expired jobs (see docs/archive.md).
    Archive {
        #[command(subcommand)]
        command: ArchiveCommand,
    },
    /// Bearer tokens (see docs/access.md).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random token (give it to the client; it is shown only
    /// now) and the configuration line holding its SHA-256 digest.
    New {
        /// The token's name, shown in the audit trail (A-Z a-z 0-9 . _ -).
        name: String,
        /// What the token may do: read, write (and read) or admin (and write).
        #[arg(long, default_value = "read", value_parser = ["read", "write", "admin"])]
        scope: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Read a job's archive back into an import, straight from the archive
    /// store into PostgreSQL (no running service needed), with a progress bar.
    Replay {
        /// The job whose archive is read (as in `GET /jobs`).
        job: String,
        /// The import to store the statements into.
        #[arg(long)]
        into: i64,
    },
}

/// Settings shared by every command; each is a global flag with an env var.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "INSIKT_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// PostgreSQL connection URL; the database is created by `migrate` if missing.
    #[arg(
        long,
        env = "INSIKT_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/insikt",
        global = true
    )]
    pub database_url: String,

    /// Maximum number of pooled PostgreSQL connections.
    #[arg(long, env = "INSIKT_DB_POOL_SIZE", default_value_t = 16, global = true)]
    pub db_pool_size: usize,

    /// Kafka bootstrap servers (comma-separated host:port).
    #[arg(
        long,
        env = "INSIKT_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub kafka_brokers: String,

    /// Key that signs confirmation links; a random one (with a warning) when unset,
    /// which invalidates outstanding links on restart.
    #[arg(long, env = "INSIKT_SECRET", hide_env_values = true, global = true)]
    pub secret: Option<String>,

    /// How long a confirmation link stays valid, in seconds.
    #[arg(
        long = "confirm-ttl",
        env = "INSIKT_CONFIRM_TTL",
        default_value_t = 24 * 60 * 60,
        global = true
    )]
    pub confirm_ttl_secs: u64,

    /// A plaintext admin bearer token (kept for compatibility: prefer
    /// `--admin-tokens`, which holds digests only). Admin routes answer 403
    /// while no admin token is configured.
    #[arg(
        long,
        env = "INSIKT_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,

    /// Tokens with the `read` scope: comma-separated `name:sha256-hex` pairs
    /// (`insikt token new NAME` makes one). With no read or write token the
    /// service runs open: reads and writes need no token.
    #[arg(
        long,
        env = "INSIKT_READ_TOKENS",
        hide_env_values = true,
        global = true
    )]
    pub read_tokens: Option<String>,

    /// Tokens with the `write` scope (which includes `read`), as `--read-tokens`.
    #[arg(
        long,
        env = "INSIKT_WRITE_TOKENS",
        hide_env_values = true,
        global = true
    )]
    pub write_tokens: Option<String>,

    /// Tokens with the `admin` scope (which includes `write`), as `--read-tokens`.
    #[arg(
        long,
        env = "INSIKT_ADMIN_TOKENS",
        hide_env_values = true,
        global = true
    )]
    pub admin_tokens: Option<String>,

    /// A file of tokens, one `read|write|admin name:sha256-hex` a line (`#`
    /// starts a comment), added to those of the variables above.
    #[arg(long, env = "INSIKT_TOKENS_FILE", global = true)]
    pub tokens_file: Option<PathBuf>,

    /// Refuse to start without a read or write token (a deployment that
    /// must never run open sets this: a token setting lost from a Secret
    /// then stops the start instead of opening the data).
    #[arg(long, env = "INSIKT_REQUIRE_TOKENS", global = true)]
    pub require_tokens: bool,

    /// Groups of fewer residents than this are left out of demand (and
    /// insights) answers and counted in their `suppressed` total, so an
    /// export cannot single out a resident of a small town. 1 = off.
    #[arg(
        long,
        env = "INSIKT_MIN_GROUP_SIZE",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        global = true
    )]
    pub min_group_size: u32,

    /// A client must send a request's headers within this time (e.g. `10s`),
    /// or its connection is closed; also how long an idle kept-alive
    /// connection stays open.
    #[arg(long, env = "INSIKT_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub header_timeout: Duration,

    /// Name of this instance among several (default: hostname-pid).
    #[arg(long, env = "INSIKT_INSTANCE_ID", global = true)]
    pub instance_id: Option<String>,

    /// Tracing filter, e.g. `info` or `insikt=debug,warp=info`.
    #[arg(
        long = "log",
        env = "INSIKT_LOG",
        default_value = "info,warp=warn",
        global = true
    )]
    pub log_filter: String,

    /// Largest accepted request body in bytes (10,000 citizens need about 70 MB).
    #[arg(long, env = "INSIKT_BODY_LIMIT", default_value_t = 100 * 1024 * 1024, global = true)]
    pub body_limit: u64,

    /// How long to wait for in-flight requests on SIGTERM/SIGINT, in seconds.
    #[arg(
        long,
        env = "INSIKT_SHUTDOWN_TIMEOUT",
        default_value_t = 30,
        global = true
    )]
    pub shutdown_timeout_secs: u64,

    /// Do not migrate on start; serve even when PostgreSQL is down.
    #[arg(long, env = "INSIKT_NO_MIGRATE", global = true)]
    pub no_migrate: bool,

    /// Directory for archived (expired, unconsumed) stream data, when
    /// `--archive-url` is not given.
    #[arg(
        long,
        env = "INSIKT_ARCHIVE_DIR",
        default_value = "archive",
        global = true
    )]
    pub archive_dir: PathBuf,

    /// Where expired streams are archived: `file:///absolute/path` or
    /// `s3://bucket/prefix` (with AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP)
    /// [default: file://<absolute --archive-dir>].
    #[arg(long, env = "INSIKT_ARCHIVE_URL", global = true)]
    pub archive_url: Option<String>,

    /// Offsets of a partition one archive object spans at most: each object
    /// is recorded once uploaded, so a crash re-archives one object at most.
    #[arg(
        long,
        env = "INSIKT_ARCHIVE_OBJECT_OFFSETS",
        default_value_t = 1_000_000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000),
        global = true
    )]
    pub archive_object_offsets: u64,

    /// Prefix of the statement topics: `{prefix}.{job name}`.
    #[arg(
        long,
        env = "INSIKT_TOPIC_PREFIX",
        default_value = "insikt.statements",
        global = true
    )]
    pub topic_prefix: String,

    /// Replication factor of the statement topics this service creates;
    /// unset: the broker's `default.replication.factor` (3 on a production
    /// cluster, so one broker may fail without losing an acknowledged write).
    #[arg(long, env = "INSIKT_TOPIC_REPLICATION", value_parser = clap::value_parser!(i32).range(1..), global = true)]
    pub topic_replication: Option<i32>,

    /// `min.insync.replicas` of the statement topics this service creates:
    /// how many replicas must have a write before it is acknowledged
    /// (`acks=all`); unset: the broker's. Below it, writes are refused.
    #[arg(long, env = "INSIKT_TOPIC_MIN_INSYNC", value_parser = clap::value_parser!(i32).range(1..), global = true)]
    pub topic_min_insync: Option<i32>,

    /// Retention window of a stream (topic `retention.ms` and job expiry):
    /// seconds, or a number with `s`, `m`, `h` or `d` (e.g. `14d`).
    #[arg(long, env = "INSIKT_RETENTION", default_value = "14d", value_parser = parse_duration, global = true)]
    pub retention: Duration,

    /// Kafka consumer group of the job consumers (offsets stay in PostgreSQL).
    #[arg(
        long,
        env = "INSIKT_CONSUMER_GROUP",
        default_value = "insikt-jobs",
        global = true
    )]
    pub consumer_group: String,

    /// Largest number of messages a job writes in one transaction.
    #[arg(
        long,
        env = "INSIKT_JOB_BATCH_SIZE",
        default_value_t = 5000,
        global = true
    )]
    pub job_batch_size: usize,

    /// Longest a job waits to fill a batch, in milliseconds.
    #[arg(
        long,
        env = "INSIKT_JOB_BATCH_MS",
        default_value_t = 200,
        global = true
    )]
    pub job_batch_ms: u64,

    /// How often the supervisor reconciles its jobs with PostgreSQL, in seconds.
    #[arg(
        long,
        env = "INSIKT_RECONCILE_SECS",
        default_value_t = 5,
        global = true
    )]
    pub reconcile_secs: u64,

    /// Batch transactions a job keeps open at once (on as many connections):
    /// two let PostgreSQL insert one batch while the next is written, on two cores.
    #[arg(
        long,
        env = "INSIKT_JOB_WRITES_IN_FLIGHT",
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=16),
        global = true
    )]
    pub job_writes_in_flight: u16,

    /// A job failing this often within `--job-failure-window` is marked `failed`.
    #[arg(
        long,
        env = "INSIKT_JOB_MAX_FAILURES",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub job_max_failures: u32,

    /// The window in which a job's failures count (e.g. `10m`).
    #[arg(long, env = "INSIKT_JOB_FAILURE_WINDOW", default_value = "10m", value_parser = parse_duration, global = true)]
    pub job_failure_window: Duration,

    /// A failed job restarts after this, doubling with each further failure (e.g. `500ms`).
    #[arg(long, env = "INSIKT_JOB_BACKOFF", default_value = "500ms", value_parser = parse_duration, global = true)]
    pub job_backoff: Duration,

    /// The longest restart delay of a failed job.
    #[arg(long, env = "INSIKT_JOB_BACKOFF_MAX", default_value = "60s", value_parser = parse_duration, global = true)]
    pub job_backoff_max: Duration,

    /// How long the consumer group waits for a silent instance (one that
    /// died) before its jobs move: the hand-over time after a crash. The
    /// broker bounds it (`group.min.session.timeout.ms`, 6 s by default).
    #[arg(long, env = "INSIKT_KAFKA_SESSION_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub kafka_session_timeout: Duration,

    /// How often an instance tells the group it is alive: a graceful
    /// hand-over is noticed at the next one. At most a third of the session timeout.
    #[arg(long, env = "INSIKT_KAFKA_HEARTBEAT", default_value = "1s", value_parser = parse_duration, global = true)]
    pub kafka_heartbeat: Duration,

    /// How many Kafka consumers an instance reads its streams with (1, 2,
    /// 4, 8 or 16), each the member of a consumer group of its own
    /// (`{group}.{deployment}.{i}of{n}`; with 1, `{group}.{deployment}`).
    /// A group stops rebalancing at about 2,800 topics (its metadata
    /// outgrows the broker's 1 MiB record); each consumer costs a few
    /// threads and sockets. Every instance of a deployment must use the
    /// same number.
    #[arg(long, env = "INSIKT_KAFKA_CONSUMERS", default_value_t = 4, value_parser = parse_consumers, global = true)]
    pub kafka_consumers: usize,

    /// How often the instance's consumers ask for every topic of the cluster
    /// to find new streams (`topic.metadata.refresh.interval.ms`). Topics
    /// made by this instance, or by another that told it (PostgreSQL
    /// `NOTIFY`), are looked for at once; this finds whatever was missed.
    /// Each refresh costs in proportion to the cluster's topics.
    #[arg(long, env = "INSIKT_KAFKA_METADATA_REFRESH", default_value = "300s", value_parser = parse_duration, global = true)]
    pub kafka_metadata_refresh: Duration,

    /// How long a stream may stay idle before its partition sleeps (paused:
    /// the consumer's fetches leave it out) until something is written to
    /// it. Thousands of idle partitions otherwise cost a fetch of them all
    /// every half second.
    #[arg(long, env = "INSIKT_STREAM_SLEEP_AFTER", default_value = "30s", value_parser = parse_duration, global = true)]
    pub stream_sleep_after: Duration,

    /// Delete an expired stream's topic once its archive is recorded
    /// (`true` or `false`). Topics of jobs named before deployment
    /// identities are never deleted (another deployment may share them).
    #[arg(
        long,
        env = "INSIKT_DELETE_EXPIRED_TOPICS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub delete_expired_topics: bool,

    /// PostgreSQL `work_mem` of a demand query grouped by course (tens of
    /// thousands of groups per import: with the default 4MB they sort on disk).
    #[arg(
        long,
        env = "INSIKT_DEMAND_WORK_MEM",
        default_value = "32MB",
        value_parser = parse_memory,
        global = true
    )]
    pub demand_work_mem: String,

    /// Memory for the insights' working sets (per import asked, its
    /// residents and its statements in columns, about 20 bytes a statement):
    /// beyond it the least recently asked imports are dropped (and read
    /// again from their segments when asked). Units `kB`, `MB`, `GB`.
    #[arg(
        long,
        env = "INSIKT_INSIGHTS_MEMORY",
        default_value = "128MB",
        value_parser = parse_bytes,
        global = true
    )]
    pub insights_memory: u64,
}

/// A number of Kafka consumers: a divisor of 16, so that each consumer
/// reads whole first hex digits of the job names.
fn parse_consumers(text: &str) -> Result<usize, String> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| crate::kafka::CONSUMER_COUNTS.contains(n))
        .ok_or_else(|| format!("{text:?}: expected 1, 2, 4, 8 or 16"))
}

/// Parses `14d`, `36h`, `90m`, `30s`, `500ms` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Some(millis) = text.trim().strip_suffix("ms") {
        return millis
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| format!("{text:?} is not a duration like 14d, 36h, 90m, 30s or 500ms"));
    }
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 14d, 36h, 90m or 30s"))?;
    let factor = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h or d)"
            ))
        }
    };
    number
        .checked_mul(factor)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// A PostgreSQL memory setting: a whole number with `kB`, `MB`, `GB` or `TB`
/// (PostgreSQL's units; without one, kilobytes), checked here so that a typo
/// stops the start instead of failing every query that sets it.
pub fn parse_memory(text: &str) -> Result<String, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() || !["", "kB", "MB", "GB", "TB"].contains(&unit) {
        return Err(format!(
            "{text:?} is not a PostgreSQL memory size like 64MB (units kB, MB, GB, TB)"
        ));
    }
    Ok(text.to_owned())
}

/// A memory size as [`parse_memory`] takes it, in bytes (`kB` = 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = parse_memory(text)?;
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit {
        "" | "kB" => 10,
        "MB" => 20,
        "GB" => 30,
        _ => 40,
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{text:?} is too large"))
}

impl Config {
    /// The configured instance id, or `hostname-pid`.
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                gethostname::gethostname().to_string_lossy(),
                std::process::id()
            )
        })
    }

    /// The archive's URL: `--archive-url`, else the archive directory's.
    pub fn archive_url(&self) -> String {
        self.archive_url
            .clone()
            .unwrap_or_else(|| crate::archive::ArchiveStore::directory_url(&self.archive_dir))
    }

    /// The configured tokens (see `crate::access`).
    pub fn tokens(&self) -> Result<crate::access::Tokens, crate::access::AccessError> {
        use crate::access::Scope;
        crate::access::Tokens::new(
            self.admin_token.as_deref(),
            [
                (Scope::Read, self.read_tokens.as_deref()),
                (Scope::Write, self.write_tokens.as_deref()),
                (Scope::Admin, self.admin_tokens.as_deref()),
            ],
            self.tokens_file.as_deref(),
        )
    }

    /// The small-group threshold (see `crate::privacy`).
    pub fn min_group_size(&self) -> crate::privacy::MinGroupSize {
        crate::privacy::MinGroupSize::new(self.min_group_size)
    }

    pub fn confirm_ttl(&self) -> Duration {
        Duration::from_secs(self.confirm_ttl_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// Settings from `INSIKT_*` variables and defaults alone (no flags).
    pub fn from_env() -> Self {
        Cli::parse_from(["insikt"]).config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_work_before_and_after_the_command() {
        let cli = Cli::parse_from(["insikt", "--listen", "0.0.0.0:9000", "migrate"]);
        assert_eq!(cli.config.listen.port(), 9000);
        assert!(matches!(cli.command, Some(Command::Migrate)));
        let cli = Cli::parse_from(["insikt", "serve", "--no-migrate"]);
        assert!(cli.config.no_migrate);
        let cli = Cli::parse_from(["insikt", "upload-airports", "a.csv", "--url", "http://x:1"]);
        assert!(matches!(
            cli.command,
            Some(Command::UploadAirports { ref url, .. }) if url.as_deref() == Some("http://x:1")
        ));
        assert_eq!(cli.config.confirm_ttl(), Duration::from_secs(86_400));
        let cli = Cli::parse_from(["insikt", "demo", "--force"]);
        assert!(matches!(
            cli.command,
            Some(Command::Demo {
                force: true,
                seed: 2019,
                residents: 3000,
                ..
            })
        ));
        let cli = Cli::parse_from(["insikt", "token", "new", "loader", "--scope", "write"]);
        assert!(matches!(
            cli.command,
            Some(Command::Token { command: TokenCommand::New { ref name, ref scope } })
                if name == "loader" && scope == "write"
        ));
        assert!(Cli::try_parse_from(["insikt", "token", "new", "x", "--scope", "root"]).is_err());
        let cli = Cli::parse_from(["insikt", "archive", "replay", "job-1", "--into", "7"]);
        assert!(matches!(
            cli.command,
            Some(Command::Archive { command: ArchiveCommand::Replay { ref job, into: 7 } }) if job == "job-1"
        ));
    }

    #[test]
    fn consumers_divide_the_sixteen_hex_digits() {
        assert_eq!(parse_consumers("4"), Ok(4));
        assert_eq!(parse_consumers("16"), Ok(16));
        assert!(parse_consumers("3").is_err());
        assert!(parse_consumers("0").is_err());
        assert!(parse_consumers("32").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("3h"), Ok(Duration::from_secs(3 * 3600)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("1.5ms").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("d").is_err());
        assert_eq!(
            Config::from_env().retention,
            Duration::from_secs(14 * 86_400)
        );
    }

    #[test]
    fn memory_sizes_are_postgres_ones() {
        assert_eq!(parse_memory("32MB").as_deref(), Ok("32MB"));
        assert_eq!(parse_memory("65536").as_deref(), Ok("65536"));
        for bad in ["", "MB", "32mb", "32 MB", "1.5GB", "lots", "32MB; DROP"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_bytes("128MB"), Ok(128 << 20));
        assert_eq!(parse_bytes("64"), Ok(64 << 10));
        assert!(parse_bytes("99999999999TB").is_err());
    }

    #[test]
    fn instance_id_defaults_to_host_and_pid() {
        let mut config = Config::from_env();
        config.instance_id = None;
        assert!(config
            .instance_id()
            .ends_with(&format!("-{}", std::process::id())));
    }
}
