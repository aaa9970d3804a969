//! API keys of the HTTP endpoint, stored hashed in the NATS key-value bucket `<prefix>api_keys`.
//!
//! A key reads `ml_<id>_<secret>`: `id` is 8 random bytes and `secret` 32 random bytes, both from
//! the operating system's CSPRNG and written as lowercase hex. The id is not secret: it selects
//! the key's record without scanning the bucket and is what logs show. The bucket maps the id to
//! a JSON [`ApiKeyRecord`] holding a name, the creation time and `sha256:<hex>`, the SHA-256 of
//! the whole key text. The key itself is shown once, by `apikeys create`, and stored nowhere.
//!
//! Why SHA-256 and not a password hash (argon2, bcrypt): those are slow on purpose so that a
//! stolen hash of a *guessable* password stays expensive to brute-force. A key with 256 random
//! bits cannot be guessed whatever the hash costs, so the slow hash would buy nothing and would
//! cost tens of milliseconds and megabytes of memory on every request (or a cache of verified
//! keys, which delays revocation). Fast hashes of random tokens are the standard for API tokens.
//! Hashes are compared in constant time (`subtle`).
//!
//! Every request reads the key's record (one KV get, served by the stream leader), so a revoked
//! key is refused from the next request on; nothing is cached.

use std::fmt;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// Prefix of every key; lets secret scanners recognise leaked keys.
pub const KEY_PREFIX: &str = "ml_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
const HASH_SCHEME: &str = "sha256:";

/// What the bucket stores per key. Holds no secret: the hash of a 256-bit random key reveals
/// nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The key id (16 hex digits), also the bucket key.
    pub id: String,
    /// Who or what the key is for.
    pub name: String,
    /// When the key was created.
    pub created: DateTime<Utc>,
    /// `sha256:<hex>` of the whole key text.
    pub hash: String,
}

/// A key just created: the only moment its text exists. `Debug` shows the id, never the secret.
pub struct NewApiKey {
    /// The stored record.
    pub record: ApiKeyRecord,
    key: String,
}

impl NewApiKey {
    /// The full key text, to show to the user once.
    pub fn expose(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey").field("record", &self.record).field("key", &"<redacted>").finish()
    }
}

/// Why a presented key was refused. Carries the key id at most, never the secret.
#[derive(Debug)]
pub enum AuthError {
    /// Not of the form `ml_<16 hex>_<64 hex>`.
    Malformed,
    /// No record for this id: never created, or revoked.
    Unknown {
        /// The key id.
        id: String,
    },
    /// The id exists but the secret does not match.
    WrongSecret {
        /// The key id.
        id: String,
    },
    /// The key store could not be read (NATS); the request may be retried.
    Unavailable(Error),
}

/// The `<prefix>api_keys` bucket.
#[derive(Debug, Clone)]
pub struct ApiKeyStore {
    kv: kv::Store,
}

impl ApiKeyStore {
    /// The bucket name for a catalog bucket prefix.
    pub fn bucket_name(prefix: &str) -> String {
        format!("{prefix}api_keys")
    }

    /// Opens the bucket `<prefix>api_keys`, creating it when missing.
    pub async fn open(js: &jetstream::Context, prefix: &str) -> Result<ApiKeyStore> {
        let name = Self::bucket_name(prefix);
        if let Ok(kv) = js.get_key_value(&name).await {
            return Ok(ApiKeyStore { kv });
        }
        let created = js
            .create_key_value(kv::Config {
                bucket: name.clone(),
                description: "Meterline API keys (hashed)".into(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await;
        match created {
            Ok(kv) => Ok(ApiKeyStore { kv }),
            // Another process created it meanwhile.
            Err(e) => {
                js.get_key_value(&name).await.map(|kv| ApiKeyStore { kv }).map_err(|_| Error::Nats(format!("create bucket {name}: {e}")))
            }
        }
    }

    /// Creates a key named `name` and stores its hash. The returned key is not kept anywhere.
    pub async fn create(&self, name: &str) -> Result<NewApiKey> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(Error::Input { path: "api key name".into(), message: format!("{name:?}: use 1 to 200 printable characters") });
        }
        let mut bytes = [0u8; ID_BYTES + SECRET_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Input { path: "api key".into(), message: "the operating system's random generator failed".into() })?;
        let (id, secret) = bytes.split_at(ID_BYTES);
        let id = hex(id);
        let key = format!("{KEY_PREFIX}{id}_{}", hex(secret));
        let record = ApiKeyRecord { id: id.clone(), name: name.to_owned(), created: Utc::now(), hash: hash(&key) };
        let value = serde_json::to_vec(&record).map_err(|e| Error::Encoding(format!("api key record: {e}")))?;
        self.kv.create(&id, Bytes::from(value)).await.map_err(Error::nats("store api key"))?;
        Ok(NewApiKey { record, key })
    }

    /// Every stored key, oldest first.
    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>> {
        let ids: Vec<String> =
            self.kv.keys().await.map_err(Error::nats("list api keys"))?.try_collect().await.map_err(Error::nats("list api keys"))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.get(&id).await? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Revokes a key: its record is purged, so the next request with it is refused.
    /// Returns false when no key has this id.
    pub async fn revoke(&self, id: &str) -> Result<bool> {
        if !is_hex(id, ID_BYTES * 2) || self.get(id).await?.is_none() {
            return Ok(false);
        }
        self.kv.purge(id).await.map_err(Error::nats("revoke api key"))?;
        Ok(true)
    }

    /// Checks a presented key text; returns its record when valid.
    pub async fn verify(&self, presented: &str) -> Result<ApiKeyRecord, AuthError> {
        let id = parse(presented).ok_or(AuthError::Malformed)?;
        let record = self.get(id).await.map_err(AuthError::Unavailable)?.ok_or_else(|| AuthError::Unknown { id: id.to_owned() })?;
        if bool::from(hash(presented).as_bytes().ct_eq(record.hash.as_bytes())) {
            Ok(record)
        } else {
            Err(AuthError::WrongSecret { id: id.to_owned() })
        }
    }

    async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let Some(value) = self.kv.get(id).await.map_err(Error::nats("read api key"))? else {
            return Ok(None);
        };
        serde_json::from_slice(&value).map(Some).map_err(|e| Error::Encoding(format!("api key record {id}: {e}")))
    }
}

/// The id of a well-formed key text `ml_<16 hex>_<64 hex>`.
fn parse(key: &str) -> Option<&str> {
    let (id, secret) = key.strip_prefix(KEY_PREFIX)?.split_once('_')?;
    (is_hex(id, ID_BYTES * 2) && is_hex(secret, SECRET_BYTES * 2)).then_some(id)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hash(key: &str) -> String {
    format!("{HASH_SCHEME}{}", hex(ring::digest::digest(&ring::digest::SHA256, key.as_bytes()).as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_well_formed_keys() {
        let id = "0123456789abcdef";
        let secret = "ab".repeat(32);
        assert_eq!(parse(&format!("ml_{id}_{secret}")), Some(id));
        assert_eq!(parse(&format!("ml_{id}_{secret}0")), None);
        assert_eq!(parse(&format!("ml_{}_{secret}", id.to_uppercase())), None);
        assert_eq!(parse(&format!("xx_{id}_{secret}")), None);
        assert_eq!(parse(&format!("ml_{id}{secret}")), None);
        assert_eq!(parse("ml_../.._x"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn hash_is_sha256_of_the_key_text() {
        assert_eq!(hash("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = NewApiKey {
            record: ApiKeyRecord { id: "0123456789abcdef".into(), name: "n".into(), created: Utc::now(), hash: "sha256:x".into() },
            key: "ml_0123456789abcdef_supersecret".into(),
        };
        assert!(!format!("{k:?}").contains("supersecret"));
    }
}
