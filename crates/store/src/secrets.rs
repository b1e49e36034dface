//! Secrets at rest: values under `/registry/secrets/` are sealed with
//! ChaCha20-Poly1305 before they are proposed, so the Raft log, the state
//! machine and every snapshot hold only ciphertext. Nodes share the key
//! (`store.secrets_key_file`, written by `shoal init`).
//!
//! ```text
//! sealed value = "SHS1" ‖ nonce (12) ‖ ciphertext ‖ tag (16); AAD = the key
//! ```
//!
//! Binding the store key as AAD means a sealed value moved to another key
//! does not open.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

pub const SECRETS_PREFIX: &[u8] = b"/registry/secrets/";
const MAGIC: &[u8; 4] = b"SHS1";

pub fn is_secret(key: &[u8]) -> bool {
    key.starts_with(SECRETS_PREFIX)
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret value is not sealed (written without encryption?)")]
    NotSealed,
    #[error("secret value does not open: wrong key or tampered data")]
    Open,
}

pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> SecretBox {
        let k = UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key is valid");
        SecretBox {
            key: LessSafeKey::new(k),
            rng: SystemRandom::new(),
        }
    }

    pub fn seal(&self, store_key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("system randomness");
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(store_key),
                &mut body,
            )
            .expect("sealing in memory cannot fail");
        let mut out = Vec::with_capacity(4 + NONCE_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    pub fn open(&self, store_key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 4 + NONCE_LEN + 16 || &sealed[..4] != MAGIC {
            return Err(SecretError::NotSealed);
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[4..4 + NONCE_LEN])
            .map_err(|_| SecretError::Open)?;
        let mut body = sealed[4 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(store_key), &mut body)
            .map_err(|_| SecretError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_refusals() {
        let b = SecretBox::new(&[3; 32]);
        let k = b"/registry/secrets/default/db";
        let sealed = b.seal(k, b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(b.open(k, &sealed).unwrap(), b"hunter2");
        assert_eq!(
            b.open(b"/registry/secrets/other", &sealed),
            Err(SecretError::Open),
            "bound to its key"
        );
        assert_eq!(
            SecretBox::new(&[4; 32]).open(k, &sealed),
            Err(SecretError::Open)
        );
        assert_eq!(b.open(k, b"plain"), Err(SecretError::NotSealed));
        assert!(is_secret(k) && !is_secret(b"/registry/configmaps/x"));
    }
}
