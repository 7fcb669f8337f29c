//! Tokens from an identity provider (RS256 / ES256 public keys), issuer and
//! audience checks (`aud` as a string or an array), and algorithm confusion.

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
    assert_eq!(server.status_with_token(&good).await, 200);
    let expired = signed(
        Algorithm::RS256,
        &private,
        json!({"sub":"alice","exp":unix_in(-600)}),
    );
    assert_eq!(server.status_with_token(&expired).await, 401);
    // Algorithm confusion: an HS256 token "signed" with the public key's bytes.
    let public_pem = std::fs::read_to_string(fixture("rsa_public.pem")).unwrap();
    let confused = token_with(json!({"sub":"alice","exp":unix_in(600)}), &public_pem);
    assert_eq!(server.status_with_token(&confused).await, 401);
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
    assert_eq!(server.status_with_token(&good).await, 200);
    let rsa =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).unwrap()).unwrap();
    let wrong_algorithm = signed(
        Algorithm::RS256,
        &rsa,
        json!({"sub":"alice","exp":unix_in(600)}),
    );
    assert_eq!(server.status_with_token(&wrong_algorithm).await, 401);
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
    assert_eq!(server.status_with_token(&good).await, 200);
    for bad in [
        json!({"sub":"alice","exp":exp,"iss":"https://evil.example","aud":"resume"}),
        json!({"sub":"alice","exp":exp,"iss":"https://id.example","aud":"other"}),
        json!({"sub":"alice","exp":exp,"aud":"resume"}),
        json!({"sub":"alice","exp":exp,"iss":"https://id.example"}),
    ] {
        assert_eq!(
            server.status_with_token(&token(bad.clone())).await,
            401,
            "{bad}"
        );
    }
}

/// A server that requires `aud` to name "resume", and a signer for its identity provider.
async fn server_requiring_audience_resume() -> (TestServer, tempfile::TempDir, EncodingKey) {
    let (server, dir) = server_with_public_key("rsa_public.pem", &[("audience", "resume")]).await;
    let private =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).unwrap()).unwrap();
    (server, dir, private)
}

#[tokio::test]
async fn an_audience_array_that_names_the_configured_audience_is_accepted() {
    let (server, _dir, private) = server_requiring_audience_resume().await;
    // The shape Keycloak and Auth0 issue.
    let keycloak = signed(
        Algorithm::RS256,
        &private,
        json!({"sub":"alice","exp":unix_in(600),"aud":["account","resume"]}),
    );
    assert_eq!(server.status_with_token(&keycloak).await, 200);
}

#[tokio::test]
async fn an_audience_that_does_not_name_the_configured_one_is_refused() {
    let (server, _dir, private) = server_requiring_audience_resume().await;
    let exp = unix_in(600);
    for claims in [
        json!({"sub":"alice","exp":exp,"aud":["account","other"]}),
        json!({"sub":"alice","exp":exp,"aud":[]}),
        // A configured audience must be present, in either form.
        json!({"sub":"alice","exp":exp,"aud":null}),
        json!({"sub":"alice","exp":exp}),
    ] {
        let token = signed(Algorithm::RS256, &private, claims.clone());
        assert_eq!(server.status_with_token(&token).await, 401, "{claims}");
    }
}

#[tokio::test]
async fn an_audience_string_equal_to_the_configured_audience_is_still_accepted() {
    let (server, _dir, private) = server_requiring_audience_resume().await;
    let token = signed(
        Algorithm::RS256,
        &private,
        json!({"sub":"alice","exp":unix_in(600),"aud":"resume"}),
    );
    assert_eq!(server.status_with_token(&token).await, 200);
}

#[tokio::test]
async fn an_audience_array_is_not_checked_when_no_audience_is_configured() {
    let (server, _dir) = server_with_public_key("rsa_public.pem", &[]).await;
    let private =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).unwrap()).unwrap();
    // Like a string `aud`, which was never checked without a configured audience.
    let token = signed(
        Algorithm::RS256,
        &private,
        json!({"sub":"alice","exp":unix_in(600),"aud":["account","other"]}),
    );
    assert_eq!(server.status_with_token(&token).await, 200);
}

#[tokio::test]
async fn demo_login_tokens_carry_the_configured_audience() {
    let server = TestServer::start(&["--demo-login", "--jwt-audience", "resume"]).await;
    let body: Value = server
        .http
        .post(server.url("/api/v1/demo/token"))
        .json(&json!({"user_id":"alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(server.status_with_token(token).await, 200);
}
