//! Logging and tracing setup.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber with `filter` (an `EnvFilter` directive such
/// as `info` or `insikt=debug`). Falls back to `info` when the filter does not
/// parse, and does nothing if a subscriber is already installed (tests).
pub fn init(filter: &str) {
    let env_filter = EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("insikt: ignoring invalid log filter {filter:?}: {error}");
        EnvFilter::new("info")
    });
    let _ = tracing_subscriber::registry()
        .with(env_filter)
        .with(tracing_subscriber::fmt::layer().with_target(true))
        .try_init();
}
