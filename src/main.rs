use std::process::ExitCode;

use clap::Parser;
use insikt::config::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    insikt::telemetry::init(&cli.config.log_filter);
    match insikt::startup::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "insikt failed");
            eprintln!("insikt: {error}");
            ExitCode::FAILURE
        }
    }
}
