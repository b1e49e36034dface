//! The wire envelope that carries every remote actor message.
//!
//! ```text
//! frame    = u32 big-endian length ‖ envelope
//! envelope = version: u8 (= 1) ‖ postcard(EnvelopeV1)
//! ```
//!
//! The version byte comes first and is checked before anything else is
//! decoded, because postcard is not self-describing: a future layout gets a
//! new version byte, never a silent reinterpretation. The deadline travels
//! as a remaining budget in milliseconds, never as a wall-clock time.
//! Golden-bytes tests below pin the encoding; changing them is a wire break.

use serde::{Deserialize, Serialize};

/// The only envelope version this binary speaks.
pub const ENVELOPE_VERSION: u8 = 1;

/// What an envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// One-way message; no reply.
    Tell,
    /// Request; exactly one `Reply` or `Error` comes back on the same stream.
    Ask,
    /// Successful answer to an `Ask` or `Subscribe` (a subscription's
    /// acceptance).
    Reply,
    /// Failed answer; the payload is a postcard `RemoteError`.
    Error,
    /// Opens an ordered subscription stream.
    Subscribe,
    /// One event of a subscription, in order.
    Event,
    /// The subscription ended; payload is a postcard `String` reason.
    End,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub kind: Kind,
    /// Actor name at the receiving node (`echo`, `chaos`, …).
    pub to: String,
    /// Sending node name (`node-3`).
    pub from: String,
    /// Stable type tag of the payload (`shoal.echo/1`).
    pub tag: String,
    /// Correlation id, echoed by replies.
    pub corr: u64,
    /// Remaining deadline budget in milliseconds; 0 means none.
    pub budget_ms: u32,
    /// Same wire form as a postcard `Vec<u8>`, copied in one go.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// Why a remote call failed on the far side (or could not be decoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    #[error("no actor named {0:?} on this node")]
    UnknownActor(String),
    #[error("actor does not handle message tag {0:?}")]
    UnknownTag(String),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("deadline exceeded on the receiving node")]
    DeadlineExceeded,
    #[error("actor mailbox unavailable: {0}")]
    Mailbox(String),
    #[error("handler failed: {0}")]
    Handler(String),
    #[error("unsupported envelope version {0}")]
    Version(u8),
    /// The sender may not do this (its certificate names another node, or
    /// the actor does not take this from it).
    #[error("forbidden: {0}")]
    Forbidden(String),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty envelope")]
    Empty,
    #[error("unsupported envelope version {0}")]
    Version(u8),
    #[error("malformed envelope: {0}")]
    Malformed(String),
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.to.len() + self.tag.len() + self.payload.len());
        out.push(ENVELOPE_VERSION);
        postcard::to_extend(self, out).expect("encoding into a Vec cannot fail")
    }

    /// Decodes one envelope; never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != ENVELOPE_VERSION {
            return Err(DecodeError::Version(version));
        }
        let (env, tail): (Envelope, &[u8]) =
            postcard::take_from_bytes(rest).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !tail.is_empty() {
            return Err(DecodeError::Malformed(format!(
                "{} trailing bytes",
                tail.len()
            )));
        }
        Ok(env)
    }

    /// The reply envelope for this request.
    pub fn reply(&self, from: &str, kind: Kind, payload: Vec<u8>) -> Envelope {
        Envelope {
            kind,
            to: self.from.clone(),
            from: from.to_string(),
            tag: self.tag.clone(),
            corr: self.corr,
            budget_ms: 0,
            payload,
        }
    }

    pub fn error_reply(&self, from: &str, err: &RemoteError) -> Envelope {
        self.reply(
            from,
            Kind::Error,
            postcard::to_allocvec(err).expect("error encodes"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Envelope {
        Envelope {
            kind: Kind::Ask,
            to: "echo".into(),
            from: "node-1".into(),
            tag: "t/1".into(),
            corr: 300,
            budget_ms: 1500,
            payload: vec![0xde, 0xad],
        }
    }

    /// Pins the wire format of envelope version 1. If this fails, the wire
    /// changed: that needs a new version byte, not a new golden value.
    #[test]
    fn golden_bytes_v1() {
        let bytes = sample().encode();
        assert_eq!(
            hex::encode(&bytes),
            "0101046563686f066e6f64652d3103742f31ac02dc0b02dead"
        );
        assert_eq!(Envelope::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn golden_bytes_kinds() {
        let tags: Vec<u8> = [
            Kind::Tell,
            Kind::Ask,
            Kind::Reply,
            Kind::Error,
            Kind::Subscribe,
            Kind::Event,
            Kind::End,
        ]
        .iter()
        .map(|k| postcard::to_allocvec(k).unwrap()[0])
        .collect();
        assert_eq!(tags, vec![0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn golden_bytes_remote_error() {
        let e = postcard::to_allocvec(&RemoteError::UnknownTag("x".into())).unwrap();
        assert_eq!(hex::encode(e), "010178");
        let e = postcard::to_allocvec(&RemoteError::DeadlineExceeded).unwrap();
        assert_eq!(hex::encode(e), "03");
    }

    #[test]
    fn rejects_other_versions_and_trailing_bytes() {
        let mut bytes = sample().encode();
        bytes[0] = 2;
        assert_eq!(Envelope::decode(&bytes), Err(DecodeError::Version(2)));
        let mut bytes = sample().encode();
        bytes.push(0);
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(Envelope::decode(&[]), Err(DecodeError::Empty));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&bytes);
        }

        /// Mutating a valid envelope never panics, and whatever decodes is a
        /// fixed point of encode/decode. (postcard accepts non-canonical
        /// varints, so the re-encoded bytes may be shorter than the input.)
        #[test]
        fn mutated_envelopes(flip in 0usize..64, value in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut env = sample();
            env.payload = payload;
            let mut bytes = env.encode();
            let i = flip % bytes.len();
            bytes[i] = value;
            if let Ok(e) = Envelope::decode(&bytes) {
                let again = e.encode();
                prop_assert!(again.len() <= bytes.len());
                prop_assert_eq!(Envelope::decode(&again).unwrap(), e);
            }
        }

        #[test]
        fn round_trip(to in "[a-z/]{0,20}", tag in "[a-z./0-9]{0,20}", corr in any::<u64>(), budget in any::<u32>(),
                      payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let env = Envelope { kind: Kind::Event, to, from: "node-9".into(), tag, corr, budget_ms: budget, payload };
            prop_assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        }
    }
}
