//! The stored form of a precompiled component: a one-line header naming the
//! sha256 of the wasmtime artifact that follows and an HMAC-SHA256 over it,
//! keyed by the nodes' signing key and bound to where the artifact is
//! stored. wasmtime runs the bytes it deserializes as native code, so a
//! node loads only artifacts a node holding the key compiled for exactly
//! this component and engine; anything else (damaged, forged, copied from
//! another component's key, signed with another key) is compiled afresh.

use crate::store::Digest;
use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha256};

const MAGIC: &[u8] = b"SLUICE-CWASM2 ";
/// Shortest signing secret accepted.
const MIN_SECRET_CHARS: usize = 32;

/// The key artifacts are signed with. Every node sharing a store must have
/// the same one to load each other's artifacts.
#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// The key of a secret (e.g. `SLUICE_SIGNING_KEY`): its SHA-256.
    pub fn from_secret(secret: &str) -> Result<Self, String> {
        let secret = secret.trim();
        if secret.chars().count() < MIN_SECRET_CHARS {
            return Err(format!(
                "the signing key must be at least {MIN_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(Self(Sha256::digest(secret.as_bytes()).into()))
    }

    /// A random key for this process alone: it trusts only what it
    /// compiles itself.
    pub fn ephemeral() -> Self {
        Self(crate::access::random())
    }

    /// A new random secret for [`Self::from_secret`] (64 hex digits).
    pub fn new_secret() -> String {
        hex::encode(crate::access::random::<32>())
    }

    /// HMAC-SHA256 (RFC 2104) of `message`.
    fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let pad = |byte: u8| block.map(|b| b ^ byte);
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }
}

/// What is signed: where the artifact is stored (component digest and
/// engine fingerprint) and the digest of its bytes.
fn signed(stored_at: &str, digest: &Digest) -> Vec<u8> {
    format!("{stored_at}\n{digest}").into_bytes()
}

/// The stored bytes of `cwasm`, to be stored at `stored_at`.
pub fn encode(cwasm: &[u8], key: &SigningKey, stored_at: &str) -> Bytes {
    let digest = Digest::of(cwasm);
    let mac = hex::encode(key.mac(&signed(stored_at, &digest)));
    let header = format!("{digest} {mac}\n");
    let mut out = BytesMut::with_capacity(MAGIC.len() + header.len() + cwasm.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(cwasm);
    out.freeze()
}

/// The artifact inside `stored` (read from `stored_at`), if its digest
/// checks out and `key` signed it for that place.
pub fn decode(stored: &Bytes, key: &SigningKey, stored_at: &str) -> Result<Bytes, String> {
    let rest = stored
        .strip_prefix(MAGIC)
        .ok_or("it has no signed Sluice artifact header")?;
    let newline = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("its header is cut off")?;
    let header = std::str::from_utf8(&rest[..newline]).map_err(|_| "its header is not text")?;
    let (digest, mac) = header
        .split_once(' ')
        .ok_or("its header has no signature")?;
    let declared =
        Digest::try_from(digest.to_string()).map_err(|_| "its header names no valid digest")?;
    let expected = key.mac(&signed(stored_at, &declared));
    let given = hex::decode(mac).map_err(|_| "its signature is not hex")?;
    if !crate::access::constant_time_eq(&given, &expected) {
        return Err(
            "its signature does not verify with this node's key (signed with another key, for another component, or forged)"
                .into(),
        );
    }
    let cwasm = stored.slice(MAGIC.len() + newline + 1..);
    let actual = Digest::of(&cwasm);
    if actual != declared {
        return Err(format!("its bytes hash to {actual}, not {declared}"));
    }
    Ok(cwasm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 has a short key; ours is always 32 bytes, so check
        // test case 1's construction with its 20-byte key zero-padded.
        let mut key = [0u8; 32];
        key[..20].copy_from_slice(&[0x0b; 20]);
        let mac = SigningKey(key).mac(b"Hi There");
        assert_eq!(
            hex::encode(mac),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn artifacts_round_trip_and_damage_or_forgery_is_detected() {
        let key = SigningKey::from_secret("0123456789abcdef0123456789abcdef").unwrap();
        let at = "compiled/fp/abc.cwasm";
        let stored = encode(b"machine code", &key, at);
        assert_eq!(
            decode(&stored, &key, at).unwrap(),
            Bytes::from("machine code")
        );
        let truncated = stored.slice(..stored.len() - 1);
        assert!(
            decode(&truncated, &key, at)
                .unwrap_err()
                .contains("hash to")
        );
        assert!(decode(&Bytes::from("raw cwasm"), &key, at).is_err());
        // Another key, or the same bytes copied to another component's key.
        let other = SigningKey::ephemeral();
        assert!(
            decode(&stored, &other, at)
                .unwrap_err()
                .contains("signature")
        );
        assert!(decode(&stored, &key, "compiled/fp/def.cwasm").is_err());
        // A valid digest header with a made-up signature.
        let digest = Digest::of(b"evil code");
        let forged = Bytes::from(format!(
            "SLUICE-CWASM2 {digest} {}\nevil code",
            "00".repeat(32)
        ));
        assert!(decode(&forged, &key, at).unwrap_err().contains("signature"));
        assert!(SigningKey::from_secret("short").is_err());
    }
}
