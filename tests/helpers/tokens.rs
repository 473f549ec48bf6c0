//! Tokens a console would present, signed by the test keys in tests/data (keys for tests only).

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

pub const ISSUER: &str = "https://console.test.finledger.dev";
pub const AUDIENCE: &str = "finledger-test";

pub struct TokenIssuer {
    keys: Vec<(&'static str, Algorithm, EncodingKey)>,
}

impl TokenIssuer {
    /// The EdDSA, ES256 and RS256 test keys, with kids "ed", "es" and "rs".
    pub fn load() -> TokenIssuer {
        let data = |name: &str| {
            std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/data")
                    .join(name),
            )
            .expect("a test key")
        };
        TokenIssuer {
            keys: vec![
                (
                    "ed",
                    Algorithm::EdDSA,
                    EncodingKey::from_ed_pem(&data("jwt-ed25519.pem")).expect("an Ed25519 key"),
                ),
                (
                    "es",
                    Algorithm::ES256,
                    EncodingKey::from_ec_pem(&data("jwt-es256.pem")).expect("a P-256 key"),
                ),
                (
                    "rs",
                    Algorithm::RS256,
                    EncodingKey::from_rsa_pem(&data("jwt-rs256.pem")).expect("an RSA key"),
                ),
            ],
        }
    }

    /// The public keys as a JWK set.
    pub fn jwks(&self) -> String {
        let keys = self
            .keys
            .iter()
            .map(|(kid, algorithm, key)| {
                let mut jwk = Jwk::from_encoding_key(key, *algorithm).expect("a public JWK");
                jwk.common.key_id = Some(kid.to_string());
                jwk.common.key_algorithm = Some(match algorithm {
                    Algorithm::EdDSA => KeyAlgorithm::EdDSA,
                    Algorithm::ES256 => KeyAlgorithm::ES256,
                    _ => KeyAlgorithm::RS256,
                });
                jwk
            })
            .collect();
        serde_json::to_string(&JwkSet { keys }).expect("a JWK set serializes")
    }

    /// A token signed with the key `kid`, with exactly these claims and this header algorithm.
    pub fn sign(&self, kid: &str, algorithm: Algorithm, claims: &serde_json::Value) -> String {
        let (_, _, key) = self.keys.iter().find(|(id, _, _)| *id == kid).expect("a test key");
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, key).expect("the token signs")
    }

    /// Valid claims for `user`, issued at `now_s` for five minutes.
    pub fn claims(user: &str, mfa: bool, now_s: i64) -> serde_json::Value {
        let amr: &[&str] = if mfa { &["pwd", "mfa"] } else { &["pwd"] };
        serde_json::json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user,
            "iat": now_s,
            "nbf": now_s,
            "exp": now_s + 300,
            "amr": amr,
        })
    }

    pub fn token_for(&self, user: &str, mfa: bool, now_s: i64) -> String {
        self.sign("ed", Algorithm::EdDSA, &TokenIssuer::claims(user, mfa, now_s))
    }
}
