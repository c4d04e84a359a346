//! Encryption at rest: the payloads of deferred operations, and the recorded errors and checkpoints of
//! `encrypted` operations, are sealed with AES-256-GCM. The key comes from `SEQUENCER_KEY` (32 bytes, base64);
//! `SEQUENCER_OLD_KEYS` (comma-separated) keeps data sealed with earlier keys readable after a rotation. A value
//! names the key that sealed it, so a missing or wrong key is a clear error, never garbage.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// The prefix of a sealed value: `enc:v1:<key id>:<base64 of nonce and ciphertext>`.
const PREFIX: &str = "enc:v1:";

/// The prefix of a value sealed for its place (`enc:v2:…`): the ciphertext is bound to associated data naming
/// the table, the row and the column, so a sealed value copied to another row or column does not open.
const PREFIX_BOUND: &str = "enc:v2:";

/// Why a value could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key is not 32 bytes of base64.
    #[error(
        "{0}: an encryption key is 32 random bytes in base64, e.g. from `openssl rand -base64 32`"
    )]
    BadKey(String),
    /// Nothing to seal with.
    #[error("no encryption key: set SEQUENCER_KEY (32 bytes, base64, e.g. from `openssl rand -base64 32`)")]
    NoKey,
    /// Sealed with a key that is not configured.
    #[error("sealed with key {0}, which is not configured: set it as SEQUENCER_KEY, or add it to SEQUENCER_OLD_KEYS after a rotation")]
    UnknownKey(String),
    /// The value is damaged, or the key with its id is not the one that sealed it, or it was sealed for another
    /// row or column.
    #[error("cannot open a sealed value: it is damaged, was sealed with another key, or belongs to another row")]
    Damaged,
    /// Plain text where a sealed value is expected, with a key configured.
    #[error("a value that should be sealed is plain text: if it was stored before the key was set, run `reseal` once to seal such values")]
    NotSealed,
}

/// The current key and the old ones. [`SequencerBuilder::encryption_keys`](crate::SequencerBuilder::encryption_keys)
/// takes one; without it, `build()` reads [`Keyring::from_env`].
///
/// ```
/// use sequencer::crypto::{is_sealed, CryptoError, Keyring};
///
/// let old = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="; // 32 bytes, base64
/// let new = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
///
/// let before = Keyring::new(Some(old), [])?;
/// let sealed = before.seal("card 4242")?;
/// assert!(is_sealed(&sealed) && sealed.starts_with("enc:v1:"));
///
/// // After a rotation the old key still opens what it sealed:
/// let after = Keyring::new(Some(new), [old])?;
/// assert_eq!(after.open(&sealed)?, "card 4242");
///
/// // Without it, the error names the key that is missing:
/// let forgot = Keyring::new(Some(new), [])?;
/// assert!(matches!(forgot.open(&sealed), Err(CryptoError::UnknownKey(_))));
/// assert!(forgot.show(&sealed).starts_with("[encrypted: sealed with key "));
///
/// assert!(matches!(Keyring::new(Some("c2hvcnQ="), []), Err(CryptoError::BadKey(_))));
/// # Ok::<(), CryptoError>(())
/// ```
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "key_ids",
                &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn key_id(bytes: &[u8]) -> String {
    format!("{:08x}", sequencer_core::meta::checksum(bytes) as u32)
}

impl Keyring {
    /// A keyring from base64 keys: the first seals, every one opens.
    pub fn new<'a>(
        current: Option<&'a str>,
        old: impl IntoIterator<Item = &'a str>,
    ) -> Result<Keyring, CryptoError> {
        let mut keys = Vec::new();
        for (i, k) in current.into_iter().chain(old).enumerate() {
            let bytes = B64
                .decode(k.trim())
                .map_err(|e| CryptoError::BadKey(format!("key #{} is not base64 ({e})", i + 1)))?;
            if bytes.len() != 32 {
                return Err(CryptoError::BadKey(format!(
                    "key #{} is {} bytes, not 32",
                    i + 1,
                    bytes.len()
                )));
            }
            keys.push((
                key_id(&bytes),
                Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
            ));
        }
        Ok(Keyring { keys })
    }

    /// `SEQUENCER_KEY` and `SEQUENCER_OLD_KEYS`.
    pub fn from_env() -> Result<Keyring, CryptoError> {
        let current = std::env::var("SEQUENCER_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty());
        let old = std::env::var("SEQUENCER_OLD_KEYS").unwrap_or_default();
        Keyring::new(
            current.as_deref(),
            old.split(',').filter(|k| !k.trim().is_empty()),
        )
    }

    /// Whether there is a key to seal with.
    pub fn can_seal(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Seals a value with the current key.
    pub fn seal(&self, plain: &str) -> Result<String, CryptoError> {
        self.encrypt(PREFIX, plain, b"")
    }

    /// `prefix<key id>:<base64 of nonce and ciphertext>`, sealed with the current key and authenticated with `aad`.
    fn encrypt(&self, prefix: &str, plain: &str, aad: &[u8]) -> Result<String, CryptoError> {
        let (id, cipher) = self.keys.first().ok_or(CryptoError::NoKey)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad,
                },
            )
            .map_err(|_| CryptoError::Damaged)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{prefix}{id}:{}", B64.encode(bytes)))
    }

    /// Opens a sealed value; a value that is not sealed is returned as it is.
    pub fn open(&self, stored: &str) -> Result<String, CryptoError> {
        match stored.strip_prefix(PREFIX) {
            Some(rest) => self.decrypt(rest, b""),
            None => Ok(stored.to_owned()),
        }
    }

    /// Opens `<key id>:<base64 of nonce and ciphertext>`, authenticated with `aad`.
    fn decrypt(&self, rest: &str, aad: &[u8]) -> Result<String, CryptoError> {
        let (id, body) = rest.split_once(':').ok_or(CryptoError::Damaged)?;
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))?;
        let bytes = B64.decode(body).map_err(|_| CryptoError::Damaged)?;
        if bytes.len() < 12 {
            return Err(CryptoError::Damaged);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Damaged)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Damaged)
    }

    /// Opens a value for display: the text, or a note saying why it cannot be shown.
    pub fn show(&self, stored: &str) -> String {
        self.open(stored)
            .unwrap_or_else(|e| format!("[encrypted: {e}]"))
    }

    /// Seals a value for its place: `place` (e.g. `deferred|42|payload`) is authenticated with it, so the sealed
    /// value opens only there.
    pub fn seal_for(&self, plain: &str, place: &str) -> Result<String, CryptoError> {
        self.encrypt(PREFIX_BOUND, plain, place.as_bytes())
    }

    /// Opens a value stored at `place`: one sealed for that place, or one sealed before values were bound to
    /// their place (`enc:v1:`). Plain text is returned as it is, unless `expect_sealed` and a key is configured:
    /// then it is [`CryptoError::NotSealed`], never accepted silently.
    pub fn open_at(
        &self,
        stored: &str,
        place: &str,
        expect_sealed: bool,
    ) -> Result<String, CryptoError> {
        let Some(rest) = stored.strip_prefix(PREFIX_BOUND) else {
            if expect_sealed && self.can_seal() && !is_sealed(stored) {
                return Err(CryptoError::NotSealed);
            }
            return self.open(stored);
        };
        self.decrypt(rest, place.as_bytes())
    }

    /// [`Keyring::open_at`] for display: the text, or a note saying why it cannot be shown.
    pub fn show_at(&self, stored: &str, place: &str) -> String {
        self.open_at(stored, place, false)
            .unwrap_or_else(|e| format!("[encrypted: {e}]"))
    }

    /// Whether a stored value is plain or sealed before values were bound to their place: `reseal` rewrites it.
    pub fn needs_resealing(stored: &str) -> bool {
        !stored.starts_with(PREFIX_BOUND)
    }
}

/// Where a sealed value is stored: the associated data it is sealed with.
pub mod place {
    /// An operation run's `last_error`.
    pub fn last_error(name: &str, run: i64) -> String {
        format!("operations|{name}|{run}|last_error")
    }

    /// A recorded error's `message` or `chain`.
    pub fn error(name: &str, run: i64, attempt: i64, column: &str) -> String {
        format!("errors|{name}|{run}|{attempt}|{column}")
    }

    /// A run's log line (`ctx.log`).
    pub fn log(name: &str, run: i64) -> String {
        format!("logs|{name}|{run}")
    }

    /// A run's checkpoint.
    pub fn checkpoint(name: &str, run: i64) -> String {
        format!("checkpoints|{name}|{run}")
    }

    /// A deferred row's `payload` or `last_error`.
    pub fn deferred(id: i64, column: &str) -> String {
        format!("deferred|{id}|{column}")
    }

    /// A task run's `args`.
    pub fn task_args(name: &str, run: i64) -> String {
        format!("operations|{name}|{run}|args")
    }

    /// A job's `last_error`.
    pub fn job(name: &str, run: i64) -> String {
        format!("jobs|{name}|{run}|last_error")
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX) || stored.starts_with(PREFIX_BOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> String {
        B64.encode([b; 32])
    }

    #[test]
    fn seals_opens_and_rotates() {
        let k1 = Keyring::new(Some(&key(1)), []).unwrap();
        let sealed = k1.seal("secret token 42").unwrap();
        assert!(is_sealed(&sealed) && !sealed.contains("secret"));
        assert_eq!(k1.open(&sealed).unwrap(), "secret token 42");
        assert_ne!(
            k1.seal("x").unwrap(),
            k1.seal("x").unwrap(),
            "a fresh nonce each time"
        );
        // Rotated: the new key seals, the old one still opens.
        let k2 = Keyring::new(Some(&key(2)), [key(1).as_str()]).unwrap();
        assert_eq!(k2.open(&sealed).unwrap(), "secret token 42");
        assert!(k2.seal("y").unwrap() != sealed);
        // Without the old key: a clear error naming the key.
        let only2 = Keyring::new(Some(&key(2)), []).unwrap();
        assert!(matches!(
            only2.open(&sealed),
            Err(CryptoError::UnknownKey(_))
        ));
        assert!(only2
            .show(&sealed)
            .starts_with("[encrypted: sealed with key"));
        // Tampering is detected.
        let mut bad = sealed.clone();
        bad.pop();
        bad.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(k1.open(&bad).is_err());
        assert_eq!(k1.open("plain text").unwrap(), "plain text");
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(matches!(
            Keyring::new(Some("short"), []),
            Err(CryptoError::BadKey(_))
        ));
        assert!(
            matches!(Keyring::new(Some(&B64.encode([0u8; 16])), []), Err(CryptoError::BadKey(m)) if m.contains("16 bytes"))
        );
        assert!(matches!(
            Keyring::default().seal("x"),
            Err(CryptoError::NoKey)
        ));
    }
}
