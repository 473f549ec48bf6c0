//! Signed checkpoints: the C2SP tlog-checkpoint body in a C2SP signed note, signed with Ed25519.
//!
//! - Checkpoint body: `<origin>\n<size>\n<base64(root)>\n`.
//! - Signed note: the text, a blank line, then one line per signature: `— <name> <base64(key id ‖
//!   signature)>`, where the key id is the first four bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key).
//! - Keys in the note formats: verifier `<name>+<key id hex>+<base64(0x01 ‖ public key)>`, signer
//!   `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ seed)>`.
//!
//! A log must never sign a checkpoint that is inconsistent with one it signed before:
//! [`CheckpointSigner::sign`] signs only after verifying a consistency proof from its last checkpoint.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SecureRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::merkle::{self, Hash, ProofError};

/// The Ed25519 algorithm byte of the signed-note key formats.
const ALGORITHM_ED25519: u8 = 0x01;

/// What introduces each signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("invalid key name {0:?}: it must be non-empty, without spaces or '+'")]
    KeyName(String),
    #[error("invalid key: {0}")]
    Key(&'static str),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("malformed checkpoint: {0}")]
    Checkpoint(&'static str),
    #[error("the note carries no signature by key {0}")]
    NotSigned(String),
    #[error("the signature by key {0} does not verify")]
    BadSignature(String),
}

fn check_name(name: &str) -> Result<(), NoteError> {
    let valid = !name.is_empty() && !name.contains('+') && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(NoteError::KeyName(name.to_string()))
    }
}

fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALGORITHM_ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Splits `<prefix><name>+<hex id>+<base64 key>` into name, id and the 32 key bytes.
fn parse_key(text: &str, prefix: &str) -> Result<(String, [u8; 4], [u8; 32]), NoteError> {
    let rest = text
        .trim_end()
        .strip_prefix(prefix)
        .ok_or(NoteError::Key("unexpected key type"))?;
    // The key is base64, which may itself contain '+'; the name and the id cannot.
    let mut parts = rest.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::Key("expected name+keyid+key"));
    };
    check_name(name)?;
    let id: [u8; 4] = hex_decode(id).ok_or(NoteError::Key("the key id is not 8 hex digits"))?;
    let key = STANDARD
        .decode(key)
        .map_err(|_| NoteError::Key("the key is not base64"))?;
    let [algorithm, key @ ..] = key.as_slice() else {
        return Err(NoteError::Key("the key is empty"));
    };
    if *algorithm != ALGORITHM_ED25519 {
        return Err(NoteError::Key("not an Ed25519 key"));
    }
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| NoteError::Key("an Ed25519 key is 32 bytes"))?;
    Ok((name.to_string(), id, key))
}

fn hex_decode(text: &str) -> Option<[u8; 4]> {
    if text.len() != 8 {
        return None;
    }
    let value = u32::from_str_radix(text, 16).ok()?;
    Some(value.to_be_bytes())
}

fn hex_encode(id: [u8; 4]) -> String {
    format!("{:08x}", u32::from_be_bytes(id))
}

fn encode_key(name: &str, id: [u8; 4], key: &[u8]) -> String {
    let mut bytes = vec![ALGORITHM_ED25519];
    bytes.extend_from_slice(key);
    format!("{name}+{}+{}", hex_encode(id), STANDARD.encode(bytes))
}

/// An Ed25519 signing key with its note name.
pub struct NoteSigner {
    name: String,
    id: [u8; 4],
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A new key from the system's secure random source.
    pub fn generate(name: &str) -> Result<NoteSigner, NoteError> {
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| NoteError::Key("the system's random source failed"))?;
        NoteSigner::from_seed(name, seed)
    }

    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<NoteSigner, NoteError> {
        check_name(name)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| NoteError::Key("not an Ed25519 seed"))?;
        let id = key_id(name, pair.public_key().as_ref());
        Ok(NoteSigner {
            name: name.to_string(),
            id,
            seed,
            pair,
        })
    }

    /// Reads a key in the signer format (`PRIVATE+KEY+...`); the key id must match the key.
    pub fn parse(text: &str) -> Result<NoteSigner, NoteError> {
        let (name, id, seed) = parse_key(text, "PRIVATE+KEY+")?;
        let signer = NoteSigner::from_seed(&name, seed)?;
        if signer.id != id {
            return Err(NoteError::Key("the key id does not match the key"));
        }
        Ok(signer)
    }

    /// The key in the signer format, for a key file.
    pub fn to_key_text(&self) -> String {
        format!("PRIVATE+KEY+{}", encode_key(&self.name, self.id, &self.seed))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> NoteVerifier {
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(self.pair.public_key().as_ref());
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            public_key,
        }
    }

    /// The signed note of `text` (which must end with a newline and hold no blank line).
    pub fn sign(&self, text: &str) -> String {
        debug_assert!(text.ends_with('\n') && !text.contains("\n\n"));
        let signature = self.pair.sign(text.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(signature.as_ref());
        format!("{text}\n{SIGNATURE_PREFIX}{} {}\n", self.name, STANDARD.encode(blob))
    }
}

/// An Ed25519 public key with its note name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    public_key: [u8; 32],
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&encode_key(&self.name, self.id, &self.public_key))
    }
}

impl NoteVerifier {
    /// Reads a key in the verifier format; the key id must match the key.
    pub fn parse(text: &str) -> Result<NoteVerifier, NoteError> {
        let (name, id, public_key) = parse_key(text, "")?;
        if key_id(&name, &public_key) != id {
            return Err(NoteError::Key("the key id does not match the key"));
        }
        Ok(NoteVerifier { name, id, public_key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The text of `note` if it carries a valid signature by this key. Signatures by other keys are
    /// ignored; a signature line naming this key that does not verify is an error.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Malformed("control characters in the text"));
        }
        if !signatures.ends_with('\n') {
            return Err(NoteError::Malformed("the signature lines do not end with a newline"));
        }
        let mut signed = false;
        for line in signatures.lines() {
            let line = line
                .strip_prefix(SIGNATURE_PREFIX)
                .ok_or(NoteError::Malformed("a signature line does not start with an em dash"))?;
            let (name, blob) = line
                .split_once(' ')
                .ok_or(NoteError::Malformed("a signature line has no signature"))?;
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if name != self.name || blob.len() < 4 || blob[..4] != self.id {
                continue;
            }
            UnparsedPublicKey::new(&ED25519, &self.public_key)
                .verify(text.as_bytes(), &blob[4..])
                .map_err(|_| NoteError::BadSignature(self.to_string()))?;
            signed = true;
        }
        if signed {
            Ok(text)
        } else {
            Err(NoteError::NotSigned(self.to_string()))
        }
    }
}

/// A tree head: the log's origin, its size and its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root))
    }

    /// Reads a checkpoint body; extension lines after the root are allowed and ignored.
    pub fn parse(body: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(NoteError::Checkpoint("expected origin, size and root lines"));
        };
        if origin.is_empty() {
            return Err(NoteError::Checkpoint("the origin is empty"));
        }
        let canonical =
            !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()) && (size == "0" || !size.starts_with('0'));
        let size = size
            .parse()
            .ok()
            .filter(|_| canonical)
            .ok_or(NoteError::Checkpoint("the size is not a decimal number"))?;
        let root = STANDARD
            .decode(root)
            .ok()
            .and_then(|root| Hash::try_from(root).ok())
            .ok_or(NoteError::Checkpoint("the root is not a base64 SHA-256 hash"))?;
        if !body.ends_with('\n') {
            return Err(NoteError::Checkpoint("the body does not end with a newline"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// The checkpoint in a signed `note`, if `verifier` signed it and its origin is the key's name.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Checkpoint, NoteError> {
        let checkpoint = Checkpoint::parse(verifier.open(note)?)?;
        if checkpoint.origin != verifier.name() {
            return Err(NoteError::Checkpoint("the origin is not the signing key's name"));
        }
        Ok(checkpoint)
    }
}

/// A checkpoint and its signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refusing to sign size {new_size}: not consistent with the last signed checkpoint (size {old_size}): {reason}")]
pub struct Inconsistent {
    pub old_size: u64,
    pub new_size: u64,
    pub reason: ProofError,
}

/// Signs checkpoints of one log, each only if it is consistent with the one signed before.
#[derive(Debug)]
pub struct CheckpointSigner {
    signer: Arc<NoteSigner>,
    last: Option<Checkpoint>,
}

impl CheckpointSigner {
    /// `last` is the latest checkpoint this log signed, if any.
    pub fn new(signer: Arc<NoteSigner>, last: Option<Checkpoint>) -> CheckpointSigner {
        CheckpointSigner { signer, last }
    }

    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    pub fn last(&self) -> Option<&Checkpoint> {
        self.last.as_ref()
    }

    /// Signs the tree of `size` leaves with `root`, given the consistency proof from the last signed
    /// checkpoint (see [`merkle::consistency_spans`]; empty when nothing was signed yet).
    pub fn sign(&mut self, size: u64, root: Hash, proof: &[Hash]) -> Result<SignedCheckpoint, Inconsistent> {
        if let Some(last) = &self.last
            && last.size > 0
        {
            merkle::verify_consistency(last.size, &last.root, size, &root, proof).map_err(|reason| Inconsistent {
                old_size: last.size,
                new_size: size,
                reason,
            })?;
        }
        let checkpoint = Checkpoint {
            origin: self.signer.name().to_string(),
            size,
            root,
        };
        let note = self.signer.sign(&checkpoint.body());
        self.last = Some(checkpoint.clone());
        Ok(SignedCheckpoint { checkpoint, note })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{TreeHasher, leaf_hash};

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("finledger.test/audit", [7; 32]).unwrap()
    }

    #[test]
    fn keys_whose_base64_holds_a_plus_round_trip() {
        let with_plus = (0u8..=255)
            .map(|seed| NoteSigner::from_seed("log", [seed; 32]).unwrap())
            .find(|signer| signer.verifier().to_string().matches('+').count() > 2)
            .expect("some key's base64 holds a '+'");
        assert_eq!(
            NoteVerifier::parse(&with_plus.verifier().to_string()),
            Ok(with_plus.verifier())
        );
        assert_eq!(
            NoteSigner::parse(&with_plus.to_key_text()).unwrap().verifier(),
            with_plus.verifier()
        );
    }

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let signer = signer();
        let again = NoteSigner::parse(&signer.to_key_text()).unwrap();
        assert_eq!(again.verifier(), signer.verifier());
        let verifier = NoteVerifier::parse(&signer.verifier().to_string()).unwrap();
        assert_eq!(verifier, signer.verifier());
        assert!(signer.verifier().to_string().starts_with("finledger.test/audit+"));
        let generated = NoteSigner::generate("other").unwrap();
        assert_ne!(generated.verifier(), signer.verifier());
    }

    #[test]
    fn malformed_keys_are_refused_with_a_reason() {
        let good = signer().verifier().to_string();
        let (name, rest) = good.split_once('+').unwrap();
        let (id, key) = rest.split_once('+').unwrap();
        let cases = [
            format!("{name}+{id}"),
            format!("{name}+00000000+{key}"),
            format!("{name}+zz+{key}"),
            format!("{name}+{id}+!!!"),
            format!("+{id}+{key}"),
            format!("a b+{id}+{key}"),
            format!("{name}+{id}+{}", STANDARD.encode([2u8; 33])),
            format!("{name}+{id}+{}", STANDARD.encode([1u8; 10])),
        ];
        for case in cases {
            assert!(NoteVerifier::parse(&case).is_err(), "{case}");
        }
        assert!(NoteSigner::parse(&good).is_err());
    }

    /// The C2SP key id: SHA-256("PeterNeumann\n" ‖ 0x01 ‖ key)[:4], for the signed-note spec's example
    /// key, and the spec's example note verifies with it.
    #[test]
    fn the_signed_note_spec_example_verifies() {
        let verifier =
            NoteVerifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap();
        let note = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\
                    \n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        assert_eq!(
            verifier.open(note).unwrap(),
            "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
        );
        let altered = note.replace("answer", "Answer");
        assert!(matches!(verifier.open(&altered), Err(NoteError::BadSignature(_))));
    }

    #[test]
    fn checkpoints_sign_and_open() {
        let signer = signer();
        let checkpoint = Checkpoint {
            origin: signer.name().to_string(),
            size: 12,
            root: [5; 32],
        };
        let note = signer.sign(&checkpoint.body());
        assert!(note.starts_with("finledger.test/audit\n12\nBQUF"));
        assert_eq!(Checkpoint::open(&note, &signer.verifier()), Ok(checkpoint));
        let other = NoteSigner::from_seed("finledger.test/audit", [8; 32]).unwrap();
        assert!(matches!(
            Checkpoint::open(&note, &other.verifier()),
            Err(NoteError::NotSigned(_))
        ));
        let forged = note.replacen("\n12\n", "\n13\n", 1);
        assert!(matches!(
            Checkpoint::open(&forged, &signer.verifier()),
            Err(NoteError::BadSignature(_))
        ));
        for body in [
            "o\n12\n",
            "o\n012\nBQUF\n",
            "\n1\nAA==\n",
            "o\nx\nAA==\n",
            "o\n1\nAA==\n",
        ] {
            assert!(Checkpoint::parse(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn the_signer_refuses_a_checkpoint_inconsistent_with_its_last() {
        let leaves: Vec<Hash> = (0..10u8).map(|i| leaf_hash(&[i])).collect();
        let tree = |leaves: &[Hash]| {
            let mut tree = TreeHasher::new();
            leaves.iter().for_each(|leaf| tree.push_leaf_hash(*leaf));
            tree.root()
        };
        let subtree =
            |leaves: &[Hash], s: merkle::Subtree| tree(&leaves[s.first_leaf() as usize..s.end_leaf() as usize]);
        let mut signer = CheckpointSigner::new(Arc::new(signer()), None);
        signer.sign(6, tree(&leaves[..6]), &[]).unwrap();
        let proof: Vec<Hash> = merkle::consistency_spans(6, 10)
            .unwrap()
            .into_iter()
            .map(|span| span.hash(|s| subtree(&leaves, s)))
            .collect();
        // A log whose fourth record was rewritten is not an extension of what was signed.
        let mut rewritten = leaves.clone();
        rewritten[3] = leaf_hash(b"rewritten");
        let refused = signer.sign(10, tree(&rewritten), &proof).unwrap_err();
        assert_eq!((refused.old_size, refused.new_size), (6, 10));
        assert_eq!(signer.last().unwrap().size, 6);
        let signed = signer.sign(10, tree(&leaves), &proof).unwrap();
        assert_eq!(signed.checkpoint.size, 10);
        assert!(signer.sign(9, tree(&leaves[..9]), &[]).is_err());
    }
}
