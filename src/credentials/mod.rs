//! Establishing who is calling: access keys, SigV4 signatures and STS session tokens.
//!
//! [`keyring`] holds the master keys that seal secrets at rest and session tokens, [`sigv4`]
//! verifies signed requests, [`session`] is the sealed, stateless session token, and
//! [`Authenticator`] ties them to the snapshot: from a signed request to the principal that
//! signed it. No secret ever leaves this module in an error, a log line or a `Debug` output.

pub mod authenticate;
pub mod keyring;
pub mod oidc;
pub mod session;
pub mod sigv4;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub use authenticate::{Authenticated, Authenticator, Caller};
pub use keyring::KeyRing;
pub use session::Session;

/// A secret access key. It prints as `Secret(..)`, compares in constant time, and is only
/// readable through [`Secret::expose`].
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(text: impl Into<Box<str>>) -> Secret {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A new secret access key: 40 characters of base64, like AWS's.
    pub fn generate() -> Secret {
        Secret(STANDARD.encode(keyring::random_bytes::<30>()).into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        constant_time_eq::constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Secret {}

/// Long-term access key ids start with `AKIA`, temporary ones with `ASIA`.
pub const LONG_TERM_PREFIX: &str = "AKIA";
pub const TEMPORARY_PREFIX: &str = "ASIA";

/// A new access key id: the prefix and 16 characters of AWS's base32 alphabet.
pub fn new_access_key_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bytes = keyring::random_bytes::<16>();
    let mut id = String::with_capacity(20);
    id.push_str(prefix);
    id.extend(bytes.iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char));
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_have_aws_shapes_and_secrets_do_not_print() {
        let id = new_access_key_id(LONG_TERM_PREFIX);
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AKIA") && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        let secret = Secret::generate();
        assert_eq!(secret.expose().len(), 40);
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        assert_ne!(secret, Secret::generate());
        assert_eq!(secret, secret.clone());
    }
}
