//! Who is calling: JWT verification and the authenticated-user extractors.
//!
//! The server's session upgrade takes more credentials than a JWT (a session
//! ticket, a subprotocol) and a knob for query tokens; `http::session_auth`
//! reads those.
//!
//! The user id is the `sub` of a token verified with the configured key, and
//! nothing else: no route takes a user id from a body or query. Keys come from
//! [`AuthKeys`] in the app state, never from globals.
//!
//! * HS256 with `RESUME_JWT_SECRET`, or RS256/ES256 with an identity provider's
//!   public key. Only the configured algorithm is accepted, so `alg: none` and
//!   algorithm confusion (an HS256 token "signed" with the public key) fail.
//! * `exp` and `sub` are required; `nbf`, `iss` and `aud` are checked when
//!   present/configured. `aud` may be one string or an array (as Keycloak and
//!   Auth0 issue it); jsonwebtoken's validation accepts either when it names
//!   the configured audience, so [`Audience`] only has to parse both forms.
//! * Demo mode: without any key a random secret is generated at start, and the
//!   demo login route may mint tokens with it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};
use crate::error::ApiError;

/// Longest accepted user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 128;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

/// A verified user id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Checks the rules for a user id: 1 to 128 bytes, no control characters.
    pub fn parse(raw: &str) -> Result<Self, AuthError> {
        if raw.is_empty() || raw.len() > MAX_USER_ID_BYTES || raw.chars().any(char::is_control) {
            return Err(AuthError::BadSubject);
        }
        Ok(Self(raw.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header (or `access_token` where allowed).
    #[error("missing bearer token")]
    Missing,
    /// The token failed verification (signature, algorithm, expiry, claims).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// `sub` is empty, too long or has control characters.
    #[error("invalid token: sub must be 1 to 128 bytes without control characters")]
    BadSubject,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Unauthorized(e.to_string())
    }
}

/// The claims this service reads and issues.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Issuer, when the deployment uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, when the deployment uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// The `aud` claim in either form RFC 7519 allows. Whether it names the
/// configured audience is checked by jsonwebtoken's `Validation`, not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "resume"`, the form this server mints.
    One(String),
    /// `"aud": ["account", "resume"]`, the form identity providers issue for
    /// tokens meant for several services.
    Many(Vec<String>),
}

/// Verification (and, with a secret, signing) keys; one `Arc`, cloned by the
/// auth extractors on every request.
#[derive(Clone)]
pub struct AuthKeys(Arc<Keys>);

impl std::ops::Deref for AuthKeys {
    type Target = Keys;

    fn deref(&self) -> &Keys {
        &self.0
    }
}

/// The parts of [`AuthKeys`].
pub struct Keys {
    /// Key the signature is checked with.
    decoding: DecodingKey,
    /// Accepted algorithm and required claims.
    validation: Validation,
    /// Present with a shared secret: lets the server mint tokens (CLI, demo login).
    encoding: Option<EncodingKey>,
    /// `iss` / `aud` put into minted tokens so they pass our own validation.
    issuer: Option<String>,
    /// See `issuer`.
    audience: Option<String>,
    /// The secret was generated at start (no key configured).
    demo_mode: bool,
}

impl std::fmt::Debug for AuthKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKeys")
            .field("algorithms", &self.validation.algorithms)
            .field("demo_mode", &self.demo_mode)
            .finish_non_exhaustive()
    }
}

impl AuthKeys {
    /// Builds the keys from the config; generates a random secret when none is set.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let (decoding, algorithm, encoding, demo_mode) = if let Some(path) = &config.jwt_public_key
        {
            let knob = "--jwt-public-key / RESUME_JWT_PUBLIC_KEY";
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::new(knob, format!("cannot read {}: {e}", path.display()))
            })?;
            let (key, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                (key, Algorithm::RS256)
            } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                (key, Algorithm::ES256)
            } else {
                return Err(ConfigError::new(
                    knob,
                    "not an RSA or EC (P-256) public key in PEM",
                ));
            };
            (key, algorithm, None, false)
        } else {
            let (secret, demo_mode) = match &config.jwt_secret {
                Some(secret) => (secret.expose().as_bytes().to_vec(), false),
                None => (random_secret(), true),
            };
            let decoding = DecodingKey::from_secret(&secret)
                .map_err(|e| ConfigError::new("RESUME_JWT_SECRET", e.to_string()))?;
            let encoding = EncodingKey::from_secret(&secret)
                .map_err(|e| ConfigError::new("RESUME_JWT_SECRET", e.to_string()))?;
            (decoding, Algorithm::HS256, Some(encoding), demo_mode)
        };

        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present, not only right when present.
        let mut required = vec!["exp", "sub"];
        if config.jwt_issuer.is_some() {
            required.push("iss");
        }
        if config.jwt_audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        match &config.jwt_issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &config.jwt_audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(Self(Arc::new(Keys {
            decoding,
            validation,
            encoding,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            demo_mode,
        })))
    }

    /// Whether the secret was generated at start (no key configured).
    pub fn is_demo_mode(&self) -> bool {
        self.demo_mode
    }

    /// Whether this server can mint tokens (it holds a shared secret).
    pub fn can_sign(&self) -> bool {
        self.encoding.is_some()
    }

    /// Verifies a token and returns its user.
    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        UserId::parse(&data.claims.sub)
    }

    /// Mints a token for `user` valid for `ttl_seconds`; `None` when the server
    /// only holds a public key.
    pub fn sign(&self, user: &UserId, ttl_seconds: u64) -> Option<String> {
        let encoding = self.encoding.as_ref()?;
        let now = unix_seconds();
        let claims = Claims {
            sub: user.as_str().to_owned(),
            exp: now + ttl_seconds,
            iat: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(Audience::One),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding).ok()
    }
}

fn random_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 32];
    rand::fill(&mut secret[..]);
    secret
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The token from an `Authorization: Bearer …` header, if any.
pub(crate) fn bearer_token(parts: &Parts) -> Result<Option<&str>, AuthError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Invalid("malformed Authorization header".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| AuthError::Invalid("Authorization must be `Bearer <token>`".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Invalid(
            "Authorization must be `Bearer <token>`".into(),
        ));
    }
    Ok(Some(token.trim()))
}

/// A caller authenticated by an `Authorization: Bearer` header.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub UserId);

impl<S> FromRequestParts<S> for AuthenticatedUser
where
    AuthKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?.ok_or(AuthError::Missing)?;
        Ok(Self(AuthKeys::from_ref(state).verify(token)?))
    }
}

/// The first value of `name` in a URL query string, percent-decoded.
pub(crate) fn form_urlencoded_value(query: &str, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn user_ids_are_bounded() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"a".repeat(128)).is_ok());
        assert!(UserId::parse(&"a".repeat(129)).is_err());
        assert!(UserId::parse("a\nb").is_err());
    }

    fn test_keys() -> AuthKeys {
        let mut config = crate::config::Config::from_env_and_args(["resume-server"]).unwrap();
        config.jwt_secret = Some(Secret::new("a-secret-that-is-long-enough-for-hs256!"));
        AuthKeys::from_config(&config).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_tokens_never_verify_and_never_panic(token in ".{0,300}") {
            proptest::prop_assert!(test_keys().verify(&token).is_err());
        }

        #[test]
        fn tampered_tokens_never_verify(index in 0usize..200, byte in proptest::num::u8::ANY) {
            let keys = test_keys();
            let token = keys.sign(&UserId::parse("alice").unwrap(), 60).unwrap();
            let mut bytes = token.clone().into_bytes();
            let index = index % bytes.len();
            proptest::prop_assume!(bytes[index] != byte);
            bytes[index] = byte;
            let tampered = String::from_utf8_lossy(&bytes).into_owned();
            // Base64url padding bits can make a different string decode to the same bytes.
            if let Ok(user) = keys.verify(&tampered) {
                proptest::prop_assert_eq!(user.as_str(), "alice");
            }
        }

        #[test]
        fn query_strings_never_panic(query in ".{0,200}") {
            let _ = form_urlencoded_value(&query, "access_token");
            let _ = form_urlencoded_value(&query, "ticket");
        }

        #[test]
        fn user_ids_are_accepted_exactly_when_within_the_rules(raw in ".{0,200}") {
            let valid = !raw.is_empty() && raw.len() <= MAX_USER_ID_BYTES && !raw.chars().any(char::is_control);
            proptest::prop_assert_eq!(UserId::parse(&raw).is_ok(), valid);
        }
    }

    #[test]
    fn signed_tokens_round_trip() {
        let keys = test_keys();
        let token = keys.sign(&UserId::parse("alice").unwrap(), 60).unwrap();
        assert_eq!(keys.verify(&token).unwrap().as_str(), "alice");
    }

    fn keys_with_audience(audience: &str) -> AuthKeys {
        let mut config =
            crate::config::Config::from_env_and_args(["resume-server", "--jwt-audience", audience])
                .unwrap();
        config.jwt_secret = Some(Secret::new("a-secret-that-is-long-enough-for-hs256!"));
        AuthKeys::from_config(&config).unwrap()
    }

    #[test]
    fn audience_is_accepted_as_a_string_or_an_array_that_names_it() {
        let keys = keys_with_audience("resume");
        let token_for = |aud: Option<Audience>| {
            let claims = Claims {
                sub: "alice".into(),
                exp: unix_seconds() + 60,
                iat: None,
                iss: None,
                aud,
            };
            let encoding = keys.encoding.as_ref().unwrap();
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding).unwrap()
        };
        let many = |names: &[&str]| Audience::Many(names.iter().map(|n| n.to_string()).collect());
        for (aud, accepted) in [
            (Some(Audience::One("resume".into())), true),
            (Some(many(&["account", "resume"])), true),
            (Some(many(&["resume"])), true),
            (Some(Audience::One("account".into())), false),
            (Some(many(&["account", "other"])), false),
            (Some(many(&[])), false),
            (None, false),
        ] {
            let verified = keys.verify(&token_for(aud.clone()));
            assert_eq!(verified.is_ok(), accepted, "{aud:?}: {verified:?}");
        }
    }

    #[test]
    fn minted_tokens_carry_the_configured_audience() {
        let keys = keys_with_audience("resume");
        let token = keys.sign(&UserId::parse("alice").unwrap(), 60).unwrap();
        assert_eq!(keys.verify(&token).unwrap().as_str(), "alice");
    }

    #[test]
    fn access_token_is_read_from_the_query() {
        assert_eq!(
            form_urlencoded_value("movie_id=x&access_token=a%2Eb", "access_token").as_deref(),
            Some("a.b")
        );
        assert_eq!(form_urlencoded_value("movie_id=x", "access_token"), None);
    }
}
