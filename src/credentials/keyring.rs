//! The master keys that protect secrets at rest and seal session tokens.
//!
//! Keys live outside sled (a file or an environment variable), so that a copy of the data
//! directory alone reveals no secret. The first key seals; every listed key opens, which is how
//! keys rotate: put the new key first and keep the old one until what it sealed has expired or
//! been re-sealed.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::Mac;
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const KEY_ID_BYTES: usize = 4;
const NONCE_BYTES: usize = 24;
const HEADER_BYTES: usize = 1 + KEY_ID_BYTES + NONCE_BYTES;

/// Why the master keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("cannot read the master key file `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot create the master key file `{path}`: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error(
        "{origin}, key {index}: {message}; each key is 32 random bytes in base64, one per line \
         (generate one with `head -c 32 /dev/urandom | base64`)"
    )]
    Invalid { origin: String, index: usize, message: String },
    #[error("{origin} holds no key; add one 32-byte key in base64 per line")]
    Empty { origin: String },
}

/// What a sealed value is for: each purpose seals with its own key derived from the master key,
/// so that a value sealed for one purpose never opens as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Secret access keys and MFA seeds in the store.
    StoredSecret,
    /// STS session tokens.
    SessionToken,
    /// Encoded authorization messages, the explanations of denials.
    AuthorizationMessage,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::StoredSecret => b"iamd/v1/stored-secret",
            Purpose::SessionToken => b"iamd/v1/session-token",
            Purpose::AuthorizationMessage => b"iamd/v1/authorization-message",
        }
    }
}

struct MasterKey {
    id: [u8; KEY_ID_BYTES],
    stored_secret: XChaCha20Poly1305,
    session_token: XChaCha20Poly1305,
    authorization_message: XChaCha20Poly1305,
}

impl MasterKey {
    fn new(bytes: &[u8; 32]) -> MasterKey {
        let derive = |purpose: Purpose| {
            let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(bytes)
                .expect("HMAC takes keys of any length");
            mac.update(purpose.label());
            XChaCha20Poly1305::new(&mac.finalize().into_bytes())
        };
        let digest = Sha256::new().chain_update(b"iamd/v1/key-id").chain_update(bytes).finalize();
        let mut id = [0u8; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        MasterKey {
            id,
            stored_secret: derive(Purpose::StoredSecret),
            session_token: derive(Purpose::SessionToken),
            authorization_message: derive(Purpose::AuthorizationMessage),
        }
    }

    fn cipher(&self, purpose: Purpose) -> &XChaCha20Poly1305 {
        match purpose {
            Purpose::StoredSecret => &self.stored_secret,
            Purpose::SessionToken => &self.session_token,
            Purpose::AuthorizationMessage => &self.authorization_message,
        }
    }
}

/// The loaded master keys. Its `Debug` shows only key ids.
pub struct KeyRing {
    keys: Vec<MasterKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|k| URL_SAFE_NO_PAD.encode(k.id)).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

/// A sealed value could not be opened: tampered with, sealed for another purpose, or sealed by
/// a key that is no longer in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the sealed value cannot be opened with the configured master keys")]
pub struct Unsealable;

impl KeyRing {
    /// Keys from text: one base64 key per line (or comma-separated), `#` starts a comment.
    pub fn parse(origin: &str, text: &str) -> Result<KeyRing, KeyRingError> {
        let mut keys = Vec::new();
        let entries = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default())
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (index, entry) in entries.enumerate() {
            let invalid = |message: String| KeyRingError::Invalid {
                origin: origin.to_string(),
                index: index + 1,
                message,
            };
            // The decoder's error would quote the offending character: a piece of the key.
            let bytes = STANDARD.decode(entry).map_err(|_| invalid("not valid base64".to_string()))?;
            let bytes: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| invalid(format!("{} bytes, expected 32", bytes.len())))?;
            keys.push(MasterKey::new(&bytes));
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty { origin: origin.to_string() });
        }
        Ok(KeyRing { keys })
    }

    /// Reads the key file at `path`, creating it (readable by its owner only) with one new key
    /// if it does not exist. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(KeyRing, bool), KeyRingError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((KeyRing::parse(&format!("master key file `{}`", path.display()), &text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = format!(
                    "# iamd master keys: the first seals, all open. Keep this file apart from\n\
                     # backups of the data directory.\n{}\n",
                    STANDARD.encode(random_bytes::<32>())
                );
                write_private(path, text.as_bytes())
                    .map_err(|source| KeyRingError::Create { path: path.to_path_buf(), source })?;
                Ok((KeyRing::parse("new master key file", &text)?, true))
            }
            Err(source) => Err(KeyRingError::Read { path: path.to_path_buf(), source }),
        }
    }

    /// A ring of one fresh key, for tests and benchmarks.
    pub fn ephemeral() -> KeyRing {
        KeyRing { keys: vec![MasterKey::new(&random_bytes::<32>())] }
    }

    /// Encrypts and authenticates `plaintext`, bound to `context` (which must be given again
    /// to open it: the id of the record it belongs to, so a sealed value cannot be moved).
    pub fn seal(&self, purpose: Purpose, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let nonce_bytes = random_bytes::<NONCE_BYTES>();
        let nonce = XNonce::from(nonce_bytes);
        let ciphertext = key
            .cipher(purpose)
            .encrypt(&nonce, Payload { msg: plaintext, aad: context })
            .expect("XChaCha20-Poly1305 encrypts messages of any practical size");
        let mut sealed = Vec::with_capacity(HEADER_BYTES + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&key.id);
        sealed.extend_from_slice(&nonce_bytes);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    pub fn open(&self, purpose: Purpose, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
        if sealed.len() < HEADER_BYTES || sealed[0] != VERSION {
            return Err(Unsealable);
        }
        let id = &sealed[1..1 + KEY_ID_BYTES];
        let key = self.keys.iter().find(|k| k.id == id).ok_or(Unsealable)?;
        let nonce_bytes: [u8; NONCE_BYTES] =
            sealed[1 + KEY_ID_BYTES..HEADER_BYTES].try_into().map_err(|_| Unsealable)?;
        key.cipher(purpose)
            .decrypt(&XNonce::from(nonce_bytes), Payload { msg: &sealed[HEADER_BYTES..], aad: context })
            .map_err(|_| Unsealable)
    }
}

/// Bytes from the operating system's random source. Without one, iamd cannot create secrets
/// safely, so it stops rather than fall back to something guessable.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    bytes
}

/// Writes a new file readable by its owner only; refuses to overwrite an existing one.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line() -> String {
        STANDARD.encode(random_bytes::<32>())
    }

    #[test]
    fn sealed_values_open_only_with_the_same_purpose_and_context() {
        let ring = KeyRing::ephemeral();
        let sealed = ring.seal(Purpose::StoredSecret, b"AKIA1", b"secret");
        assert_eq!(ring.open(Purpose::StoredSecret, b"AKIA1", &sealed).unwrap(), b"secret");
        assert_eq!(ring.open(Purpose::StoredSecret, b"AKIA2", &sealed), Err(Unsealable));
        assert_eq!(ring.open(Purpose::SessionToken, b"AKIA1", &sealed), Err(Unsealable));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(ring.open(Purpose::StoredSecret, b"AKIA1", &tampered), Err(Unsealable));
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_seals_with_the_new_key() {
        let (old, new) = (key_line(), key_line());
        let before = KeyRing::parse("test", &old).unwrap();
        let sealed_before = before.seal(Purpose::SessionToken, b"", b"token");
        let rotated = KeyRing::parse("test", &format!("{new}\n{old}  # previous\n")).unwrap();
        assert_eq!(rotated.open(Purpose::SessionToken, b"", &sealed_before).unwrap(), b"token");
        let sealed_after = rotated.seal(Purpose::SessionToken, b"", b"token");
        assert_eq!(before.open(Purpose::SessionToken, b"", &sealed_after), Err(Unsealable));
        let retired = KeyRing::parse("test", &new).unwrap();
        assert_eq!(retired.open(Purpose::SessionToken, b"", &sealed_before), Err(Unsealable));
    }

    #[test]
    fn bad_keys_are_refused_with_their_position() {
        let error = KeyRing::parse("IAMD_MASTER_KEYS", &format!("{},c2hvcnQ=", key_line())).err().unwrap();
        assert!(error.to_string().contains("IAMD_MASTER_KEYS, key 2: 5 bytes, expected 32"), "{error}");
        assert!(matches!(KeyRing::parse("file", "# nothing\n"), Err(KeyRingError::Empty { .. })));
    }

    #[test]
    fn a_missing_key_file_is_created_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.keys");
        let (ring, created) = KeyRing::load_or_create(&path).unwrap();
        assert!(created);
        let sealed = ring.seal(Purpose::StoredSecret, b"x", b"y");
        let (again, created) = KeyRing::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.open(Purpose::StoredSecret, b"x", &sealed).unwrap(), b"y");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
