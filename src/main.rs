//! The `resume-server` binary: flags → config → tracing → `resume_server::run`.

use std::process::ExitCode;

use clap::Parser;
use resume_server::auth::{AuthKeys, UserId};
use resume_server::config::{Cli, Command, SchemaAction};
use resume_server::store::cassandra::CassandraSettings;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = cli.config;
    if let Err(e) = config.read_secrets().and_then(|()| config.validate()) {
        eprintln!("resume-server: {e}");
        return ExitCode::from(2);
    }
    let outcome = match cli.command {
        None => serve(config).await,
        Some(Command::Token { sub, ttl }) => print_token(&config, &sub, ttl),
        Some(Command::Openapi) => {
            print!("{}", resume_server::http::openapi::document_json(true));
            Ok(())
        }
        Some(Command::Schema {
            action: SchemaAction::Apply,
        }) => apply_schema(&config).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("resume-server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: resume_server::config::Config) -> Result<(), String> {
    let listener = resume_server::server::bind(config.listen, config.listen_backlog)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    resume_server::run(config, listener, resume_server::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn apply_schema(config: &resume_server::config::Config) -> Result<(), String> {
    let settings = CassandraSettings::from_config(config).map_err(|e| e.to_string())?;
    resume_server::store::cassandra::apply_schema(&settings)
        .await
        .map_err(|e| e.to_string())?;
    println!("schema applied to keyspace {}", settings.keyspace);
    Ok(())
}

fn print_token(config: &resume_server::config::Config, sub: &str, ttl: u64) -> Result<(), String> {
    if config.jwt_secret.is_none() {
        return Err("RESUME_JWT_SECRET or --jwt-secret-file must be set to sign tokens".into());
    }
    let keys = AuthKeys::from_config(config).map_err(|e| e.to_string())?;
    let user = UserId::parse(sub).map_err(|e| e.to_string())?;
    let token = keys.sign(&user, ttl).ok_or("this key cannot sign tokens")?;
    println!("{token}");
    Ok(())
}
