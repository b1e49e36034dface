//! The gossip wire: UDP datagrams sealed with ChaCha20-Poly1305 under the
//! cluster gossip key (as memberlist's keyring does).
//!
//! ```text
//! packet    = nonce (12 random bytes) ‖ AEAD(plaintext) ‖ tag (16)
//! plaintext = sender name length (u8) ‖ sender name ‖ foca packet
//! ```
//!
//! The sender name is inside the authenticated part, so fault rules can act
//! per node pair on receive, and a packet from outside the cluster (another
//! key, or garbage) is refused before foca ever parses it.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const AAD: &[u8] = b"shoal/1 gossip";
pub const OVERHEAD: usize = NONCE_LEN + 16 + 1 + 64;

pub struct GossipCipher {
    key: LessSafeKey,
    rng: SystemRandom,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("packet too short")]
    Short,
    #[error("authentication failed")]
    Auth,
    #[error("bad sender field")]
    Sender,
}

impl GossipCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key)
            .expect("a 32-byte key is valid for ChaCha20-Poly1305");
        GossipCipher {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    pub fn seal(&self, sender: &str, data: &[u8]) -> Vec<u8> {
        let name = &sender.as_bytes()[..sender.len().min(64)];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("system randomness");
        let mut buf = Vec::with_capacity(NONCE_LEN + 1 + name.len() + data.len() + 16);
        buf.extend_from_slice(&nonce);
        buf.push(name.len() as u8);
        buf.extend_from_slice(name);
        buf.extend_from_slice(data);
        let mut body = buf.split_off(NONCE_LEN);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut body,
            )
            .expect("sealing in memory cannot fail");
        buf.extend_from_slice(&body);
        buf
    }

    /// Returns (sender, foca packet) for an authentic packet.
    pub fn open<'a>(&self, packet: &'a mut [u8]) -> Result<(String, &'a [u8]), OpenError> {
        if packet.len() < NONCE_LEN + 16 + 1 {
            return Err(OpenError::Short);
        }
        let (nonce, body) = packet.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Short)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(AAD), body)
            .map_err(|_| OpenError::Auth)?;
        let (&len, rest) = plain.split_first().ok_or(OpenError::Sender)?;
        let len = len as usize;
        if rest.len() < len {
            return Err(OpenError::Sender);
        }
        let name = std::str::from_utf8(&rest[..len])
            .map_err(|_| OpenError::Sender)?
            .to_string();
        Ok((name, &rest[len..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let c = GossipCipher::new(&[7; 32]);
        let mut p = c.seal("node-3", b"hello");
        let (from, data) = c
            .open(&mut p.clone())
            .map(|(f, d)| (f, d.to_vec()))
            .unwrap();
        assert_eq!(from, "node-3");
        assert_eq!(data, b"hello");
        let last = p.len() - 1;
        p[last] ^= 1;
        assert_eq!(c.open(&mut p), Err(OpenError::Auth));
        let other = GossipCipher::new(&[8; 32]);
        assert_eq!(
            other.open(&mut c.seal("node-3", b"x")),
            Err(OpenError::Auth)
        );
    }

    proptest! {
        #[test]
        fn garbage_never_opens_or_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let c = GossipCipher::new(&[1; 32]);
            prop_assert!(c.open(&mut bytes).is_err());
        }
    }
}
