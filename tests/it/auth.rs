//! Tokens from an identity provider (RS256 / ES256 public keys), issuer and
//! audience checks, algorithm confusion, and the `token` subcommand.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{TestServer, test_config, token_with, unix_in};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name)
}

fn signed(algorithm: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).unwrap()
}

async fn server_with_public_key(
    file: &str,
    extra: &[(&str, &str)],
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path(), &[]);
    config.jwt_secret = None;
    config.jwt_public_key = Some(fixture(file));
    for (knob, value) in extra {
        match *knob {
            "issuer" => config.jwt_issuer = Some((*value).into()),
            "audience" => config.jwt_audience = Some((*value).into()),
            _ => unreachable!(),
        }
    }
    (TestServer::start_with(config).await, dir)
}

async fn status_with(server: &TestServer, token: &str) -> u16 {
    server
        .http
        .get(server.url("/api/v1/stream?movie_id=clock"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn rs256_tokens_from_the_identity_provider_are_accepted() {
    let (server, _dir) = server_with_public_key("rsa_public.pem", &[]).await;
    let private =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).unwrap()).unwrap();
    let good = signed(
        Algorithm::RS256,
        &private,
        json!({"sub":"alice","exp":unix_in(600)}),
    );
    assert_eq!(status_with(&server, &good).await, 200);
    let expired = signed(
        Algorithm::RS256,
        &private,
        json!({"sub":"alice","exp":unix_in(-600)}),
    );
    assert_eq!(status_with(&server, &expired).await, 401);
    // Algorithm confusion: an HS256 token "signed" with the public key's bytes.
    let public_pem = std::fs::read_to_string(fixture("rsa_public.pem")).unwrap();
    let confused = token_with(json!({"sub":"alice","exp":unix_in(600)}), &public_pem);
    assert_eq!(status_with(&server, &confused).await, 401);
    // Without a shared secret there is no demo login.
    let response = server
        .http
        .post(server.url("/api/v1/demo/token"))
        .json(&json!({"user_id":"alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn es256_tokens_from_the_identity_provider_are_accepted() {
    let (server, _dir) = server_with_public_key("ec_public.pem", &[]).await;
    let private =
        EncodingKey::from_ec_pem(&std::fs::read(fixture("ec_private.pem")).unwrap()).unwrap();
    let good = signed(
        Algorithm::ES256,
        &private,
        json!({"sub":"alice","exp":unix_in(600)}),
    );
    assert_eq!(status_with(&server, &good).await, 200);
    let rsa =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).unwrap()).unwrap();
    let wrong_algorithm = signed(
        Algorithm::RS256,
        &rsa,
        json!({"sub":"alice","exp":unix_in(600)}),
    );
    assert_eq!(status_with(&server, &wrong_algorithm).await, 401);
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let (server, _dir) = server_with_public_key(
        "rsa_public.pem",
        &[("issuer", "https://id.example"), ("audience", "resume")],
    )
    .await;
    let private =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).unwrap()).unwrap();
    let token = |claims: Value| signed(Algorithm::RS256, &private, claims);
    let exp = unix_in(600);
    let good = token(json!({"sub":"alice","exp":exp,"iss":"https://id.example","aud":"resume"}));
    assert_eq!(status_with(&server, &good).await, 200);
    for bad in [
        json!({"sub":"alice","exp":exp,"iss":"https://evil.example","aud":"resume"}),
        json!({"sub":"alice","exp":exp,"iss":"https://id.example","aud":"other"}),
        json!({"sub":"alice","exp":exp,"aud":"resume"}),
        json!({"sub":"alice","exp":exp,"iss":"https://id.example"}),
    ] {
        assert_eq!(
            status_with(&server, &token(bad.clone())).await,
            401,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn the_token_subcommand_prints_a_token_the_server_accepts() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resume-server"))
        .args(["token", "--sub", "alice", "--ttl", "60"])
        .env("RESUME_JWT_SECRET", crate::support::SECRET)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let server = TestServer::start(&[]).await;
    assert_eq!(status_with(&server, &token).await, 200);
    // Without a secret it refuses, saying why.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resume-server"))
        .args(["token", "--sub", "alice"])
        .env_remove("RESUME_JWT_SECRET")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("RESUME_JWT_SECRET"));
}

#[tokio::test]
async fn invalid_configuration_fails_at_start_with_one_line_naming_the_knob() {
    for (variable, value, knob) in [
        (
            "RESUME_COMPLETION_THRESHOLD",
            "1.5",
            "--completion-threshold",
        ),
        ("RESUME_JWT_SECRET", "too-short", "RESUME_JWT_SECRET"),
        ("RESUME_FLUSH_INTERVAL_MS", "0", "--flush-interval-ms"),
        (
            "RESUME_JWT_PUBLIC_KEY",
            "/no/such/key.pem",
            "--jwt-public-key",
        ),
        ("RESUME_CATALOG", "/no/such/catalog.json", "catalog"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_resume-server"))
            .env(variable, value)
            .env("RESUME_LISTEN", "127.0.0.1:0")
            .env("RESUME_DATA_DIR", tempfile::tempdir().unwrap().path())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{variable}={value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message: Vec<_> = stderr
            .lines()
            .filter(|l| l.starts_with("resume-server:"))
            .collect();
        assert_eq!(message.len(), 1, "{stderr}");
        assert!(message[0].contains(knob), "{variable}: {stderr}");
    }
}
