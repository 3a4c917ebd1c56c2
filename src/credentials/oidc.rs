//! OpenID Connect identity providers, for AssumeRoleWithWebIdentity.
//!
//! Each configured provider has an issuer URL, the audiences (client ids) its tokens may be
//! for, and its signing keys (a JWKS) from a file or from a URL. A token is accepted when its
//! issuer is configured, its signature verifies with the key its `kid` names (RS256/384/512,
//! PS256/384/512, ES256/384), and its audience, expiry and not-before hold. Keys from a URL are
//! fetched at start, refreshed periodically, and again (at most once a minute) when a token
//! names a key not seen yet, which is how providers roll keys.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// How often keys from a URL are refreshed, and the least time between two fetches.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(3_600);
const MIN_FETCH_INTERVAL: Duration = Duration::from_secs(60);
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 60;

/// A provider as configured.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `https://token.actions.githubusercontent.com`: the tokens' `iss`.
    pub issuer: String,
    /// The `aud` values accepted (the provider's client ids).
    pub audiences: Vec<String>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
}

/// Why a provider's configuration or keys are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("OIDC provider `{issuer}`: {message}")]
    Config { issuer: String, message: String },
    #[error("OIDC provider `{issuer}`: cannot read its keys from `{origin}`: {message}")]
    Keys { issuer: String, origin: String, message: String },
}

/// A web identity token refused, with AWS's error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct TokenError {
    pub code: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> TokenError {
    TokenError { code: "InvalidIdentityToken", message: message.into() }
}

/// The claims iamd reads from a web identity token.
#[derive(Clone, Debug, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    /// Expiry, seconds since the epoch (required: tokens without it are refused). A float, as
    /// JSON numbers may be.
    pub exp: f64,
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    #[serde(default)]
    pub amr: Option<serde_json::Value>,
    #[serde(default)]
    pub azp: Option<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

pub struct Provider {
    pub config: ProviderConfig,
    /// The provider's name in ARNs and condition keys: the issuer without `https://`.
    pub name: String,
    keys: ArcSwap<JwkSet>,
    last_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

impl Provider {
    /// The provider's ARN in `account`: `arn:aws:iam::ACCOUNT:oidc-provider/NAME`.
    pub fn arn(&self, account: &str) -> String {
        format!("arn:aws:iam::{account}:oidc-provider/{}", self.name)
    }
}

/// A token that verified, and the provider that issued it.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    pub provider: Arc<Provider>,
    pub claims: Claims,
    /// The audience that matched the provider's configuration.
    pub audience: String,
}

/// The configured providers.
#[derive(Debug, Default)]
pub struct WebIdentity {
    providers: Vec<Arc<Provider>>,
    http: Option<reqwest::Client>,
}

fn parse_jwks(issuer: &str, origin: &str, text: &str) -> Result<JwkSet, ProviderError> {
    serde_json::from_str(text).map_err(|e| ProviderError::Keys {
        issuer: issuer.to_string(),
        origin: origin.to_string(),
        message: format!("not a JSON Web Key Set ({e})"),
    })
}

impl WebIdentity {
    /// Checks the configuration and reads the key files; keys from URLs are fetched by
    /// [`WebIdentity::refresh_all`].
    pub fn new(configs: Vec<ProviderConfig>) -> Result<WebIdentity, ProviderError> {
        let mut providers = Vec::new();
        for config in configs {
            let problem = |message: &str| ProviderError::Config {
                issuer: config.issuer.clone(),
                message: message.into(),
            };
            let name = config
                .issuer
                .strip_prefix("https://")
                .filter(|rest| !rest.is_empty())
                .ok_or_else(|| problem("the issuer must be an https:// URL"))?
                .trim_end_matches('/')
                .to_string();
            if config.audiences.is_empty() {
                return Err(problem("list the audiences (client ids) its tokens may be for"));
            }
            let keys = match (&config.jwks_file, &config.jwks_url) {
                (Some(path), None) => {
                    let origin = path.display().to_string();
                    let text = std::fs::read_to_string(path).map_err(|e| ProviderError::Keys {
                        issuer: config.issuer.clone(),
                        origin: origin.clone(),
                        message: e.to_string(),
                    })?;
                    parse_jwks(&config.issuer, &origin, &text)?
                }
                (None, Some(_)) => JwkSet { keys: Vec::new() },
                _ => return Err(problem("give exactly one of jwks_file and jwks_url")),
            };
            if providers.iter().any(|p: &Arc<Provider>| p.config.issuer == config.issuer) {
                return Err(problem("the issuer is configured twice"));
            }
            providers.push(Arc::new(Provider {
                config,
                name,
                keys: ArcSwap::from_pointee(keys),
                last_fetch: Mutex::new(None),
            }));
        }
        let needs_http = providers.iter().any(|p| p.config.jwks_url.is_some());
        let http = needs_http
            .then(|| reqwest::Client::builder().timeout(Duration::from_secs(10)).build())
            .transpose()
            .map_err(|e| ProviderError::Config {
                issuer: String::new(),
                message: format!("no HTTP client: {e}"),
            })?;
        Ok(WebIdentity { providers, http })
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Fetches the keys of every provider configured with a URL; failures are logged and the
    /// previous keys kept.
    pub async fn refresh_all(&self) {
        for provider in &self.providers {
            if let Err(e) = self.fetch(provider).await {
                tracing::warn!(error = %e, "keeping the provider's previous keys");
            }
        }
    }

    async fn fetch(&self, provider: &Provider) -> Result<(), ProviderError> {
        let (Some(url), Some(http)) = (&provider.config.jwks_url, &self.http) else { return Ok(()) };
        {
            let mut last = provider.last_fetch.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < MIN_FETCH_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let failed = |message: String| ProviderError::Keys {
            issuer: provider.config.issuer.clone(),
            origin: url.clone(),
            message,
        };
        let response = http.get(url).send().await.map_err(|e| failed(e.to_string()))?;
        let response = response.error_for_status().map_err(|e| failed(e.to_string()))?;
        let text = response.text().await.map_err(|e| failed(e.to_string()))?;
        let keys = parse_jwks(&provider.config.issuer, url, &text)?;
        tracing::info!(issuer = %provider.config.issuer, keys = keys.keys.len(), "fetched the provider's keys");
        provider.keys.store(Arc::new(keys));
        Ok(())
    }

    fn provider_of(&self, token: &str) -> Result<(Arc<Provider>, jsonwebtoken::Header), TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("The web identity token is not a JWT."))?;
        // The issuer picks the keys to verify with; the claim is verified with them below.
        let claims: Claims = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| invalid("The web identity token's claims cannot be read."))?;
        let provider =
            self.providers.iter().find(|p| p.config.issuer == claims.iss).cloned().ok_or_else(|| {
                invalid(format!("No OpenIDConnect provider found in your account for {}", claims.iss))
            })?;
        Ok((provider, header))
    }

    /// Fetches the provider's keys again if the token names a key it has not seen.
    pub async fn prepare(&self, token: &str) {
        if let Ok((provider, header)) = self.provider_of(token)
            && let Some(kid) = &header.kid
            && provider.keys.load().find(kid).is_none()
            && let Err(e) = self.fetch(&provider).await
        {
            tracing::warn!(error = %e, "cannot refresh the provider's keys");
        }
    }

    /// Verifies `token`: issuer, signature, audience, expiry.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let (provider, header) = self.provider_of(token)?;
        let keys = provider.keys.load();
        let jwk = match &header.kid {
            Some(kid) => keys.find(kid),
            None if keys.keys.len() == 1 => keys.keys.first(),
            None => None,
        }
        .ok_or_else(|| TokenError {
            code: "IDPCommunicationError",
            message: "Couldn't retrieve verification key from your identity provider".into(),
        })?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(invalid(format!("The token's algorithm {:?} is not accepted.", header.alg)));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| invalid("The provider's key is unusable."))?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&provider.config.audiences);
        validation.set_issuer(&[&provider.config.issuer]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => {
                    TokenError { code: "ExpiredTokenException", message: "Token expired".into() }
                }
                ErrorKind::InvalidAudience => invalid("Incorrect token audience"),
                ErrorKind::ImmatureSignature => invalid("The token is not valid yet (nbf)."),
                ErrorKind::InvalidSignature => invalid("The token's signature does not verify."),
                _ => invalid("The web identity token is invalid."),
            }
        })?;
        let audience = data
            .claims
            .aud
            .iter()
            .find(|a| provider.config.audiences.contains(a))
            .cloned()
            .unwrap_or_default();
        Ok(VerifiedToken { provider, claims: data.claims, audience })
    }
}
