//! Tokens a trusted front-end (role `console`) presents for the user it acts for: a JWT signed with
//! EdDSA, ES256 or RS256 by a key from the configured JWKS file, naming the user in `sub`. The issuer,
//! audience, expiry and not-before are checked against the service clock (with a small leeway), the
//! key is chosen by the header's `kid`, and the key's own algorithm must match the header's.

use anyhow::Context;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Clock difference tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_S: i64 = 30;

/// Where tokens come from and for whom they are meant.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    pub jwks_file: std::path::PathBuf,
    pub issuer: String,
    pub audience: String,
}

/// The verifying keys and the expected issuer and audience.
pub struct TokenVerifier {
    keys: Vec<(String, Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub subject: String,
    pub mfa: bool,
}

#[derive(Deserialize)]
struct RawClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    amr: Vec<String>,
}

impl TokenVerifier {
    pub fn load(settings: &TokenSettings) -> anyhow::Result<TokenVerifier> {
        let path = &settings.jwks_file;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the JWKS file {}", path.display()))?;
        TokenVerifier::from_jwks(&text, &settings.issuer, &settings.audience)
            .with_context(|| format!("in the JWKS file {}", path.display()))
    }

    pub fn from_jwks(jwks: &str, issuer: &str, audience: &str) -> anyhow::Result<TokenVerifier> {
        let set: JwkSet = serde_json::from_str(jwks).context("not a JWK set")?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().context("a key has no kid")?;
            let algorithm = key_algorithm(jwk).with_context(|| format!("key {kid:?}"))?;
            let key = DecodingKey::from_jwk(jwk).with_context(|| format!("key {kid:?}"))?;
            anyhow::ensure!(
                keys.iter().all(|(other, _, _)| *other != kid),
                "the kid {kid:?} is used twice"
            );
            keys.push((kid, algorithm, key));
        }
        anyhow::ensure!(!keys.is_empty(), "the JWK set has no keys");
        anyhow::ensure!(
            !issuer.is_empty() && !audience.is_empty(),
            "the issuer and audience must be set"
        );
        Ok(TokenVerifier {
            keys,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
        })
    }

    /// The claims of a valid token at `now_s` (seconds since the Unix epoch), or why it is not valid.
    pub fn verify(&self, token: &str, now_s: i64) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("the token does not parse: {e}"))?;
        let kid = header.kid.ok_or("the token's header has no kid")?;
        let (_, algorithm, key) = self
            .keys
            .iter()
            .find(|(id, _, _)| *id == kid)
            .ok_or_else(|| format!("no key with kid {kid:?}"))?;
        if header.alg != *algorithm {
            return Err(format!(
                "key {kid:?} is for {algorithm:?}, the token says {:?}",
                header.alg
            ));
        }
        let mut validation = Validation::new(*algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time is checked below against the service clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<RawClaims>(token.as_bytes(), key, &validation)
            .map_err(|e| format!("the token is not valid: {e}"))?;
        let claims = data.claims;
        if now_s >= claims.exp.saturating_add(LEEWAY_S) {
            return Err("the token has expired".to_string());
        }
        if claims.nbf.is_some_and(|nbf| now_s < nbf.saturating_sub(LEEWAY_S)) {
            return Err("the token is not valid yet (nbf)".to_string());
        }
        Ok(Claims {
            subject: claims.sub,
            mfa: claims.amr.iter().any(|method| method == "mfa"),
        })
    }
}

/// The one algorithm a key is for: its `alg`, which must be EdDSA, ES256 or RS256.
fn key_algorithm(jwk: &Jwk) -> anyhow::Result<Algorithm> {
    use jsonwebtoken::jwk::KeyAlgorithm;
    match jwk.common.key_algorithm {
        Some(KeyAlgorithm::EdDSA) => Ok(Algorithm::EdDSA),
        Some(KeyAlgorithm::ES256) => Ok(Algorithm::ES256),
        Some(KeyAlgorithm::RS256) => Ok(Algorithm::RS256),
        Some(other) => anyhow::bail!("the algorithm {other:?} is not accepted (EdDSA, ES256 or RS256)"),
        None => anyhow::bail!("the key has no alg"),
    }
}
