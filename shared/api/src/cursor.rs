//! Opaque, tamper-evident pagination cursors.
//!
//! A cursor carries the offset of the next page and a fingerprint of the query it belongs to,
//! sealed with HMAC-SHA256: a client can neither forge an offset nor replay a cursor with another
//! query (both answer 400 `invalid_cursor`). Locally the key is random per process, so cursors end
//! with it; the Lambda takes its key from the environment so that every instance accepts them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::ApiError;

type HmacSha256 = Hmac<Sha256>;

const FINGERPRINT: usize = 16;
const TAG: usize = 16;

#[derive(Clone)]
pub struct CursorKey([u8; 32]);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

/// What a cursor is bound to: the query, the page size and the filter (as sent).
pub fn fingerprint(query: &str, top_k: u32, filter: &str) -> [u8; FINGERPRINT] {
    let mut h = Sha256::new();
    h.update(query.as_bytes());
    h.update([0]);
    h.update(top_k.to_le_bytes());
    h.update(filter.as_bytes());
    let mut out = [0u8; FINGERPRINT];
    out.copy_from_slice(&h.finalize()[..FINGERPRINT]);
    out
}

impl CursorKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        CursorKey(key)
    }

    /// The key `QUARRY_CURSOR_SECRET` names (SHA-256 of it), or, without one, a fresh random key:
    /// cursors then last as long as the process that issued them.
    pub fn from_config(secret: Option<&quarry_core::config::Secret>) -> Result<Self, getrandom::Error> {
        match secret {
            Some(s) => Ok(CursorKey(Sha256::digest(s.expose().as_bytes()).into())),
            None => Self::random(),
        }
    }

    /// A fresh key from the operating system's randomness.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(CursorKey(key))
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG] {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(payload);
        let mut out = [0u8; TAG];
        out.copy_from_slice(&mac.finalize().into_bytes()[..TAG]);
        out
    }

    /// A cursor for the page at `offset`, cut from `snapshot` (0: ranked live).
    pub fn seal(&self, offset: usize, snapshot: u64, fingerprint: &[u8; FINGERPRINT]) -> String {
        let mut payload = Vec::with_capacity(16 + FINGERPRINT + TAG);
        payload.extend_from_slice(&(offset as u64).to_le_bytes());
        payload.extend_from_slice(&snapshot.to_le_bytes());
        payload.extend_from_slice(fingerprint);
        let tag = self.tag(&payload);
        payload.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// The offset and snapshot id a cursor carries, if this key sealed it for this fingerprint.
    pub fn open(&self, cursor: &str, fingerprint: &[u8; FINGERPRINT]) -> Result<(usize, u64), ApiError> {
        let invalid =
            || ApiError::bad_request("invalid_cursor", "the cursor is not one this server issued for this query");
        let raw = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).map_err(|_| invalid())?;
        if raw.len() != 16 + FINGERPRINT + TAG {
            return Err(invalid());
        }
        let (payload, tag) = raw.split_at(16 + FINGERPRINT);
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(payload);
        mac.verify_truncated_left(tag).map_err(|_| invalid())?;
        if &payload[16..] != fingerprint {
            return Err(invalid());
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&payload[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Ok((usize::try_from(word(0)).map_err(|_| invalid())?, word(8)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let key = CursorKey::from_bytes([7; 32]);
        let fp = fingerprint("vitamin d", 10, "");
        let c = key.seal(30, 9, &fp);
        assert_eq!(key.open(&c, &fp).expect("valid"), (30, 9));

        let mut raw = URL_SAFE_NO_PAD.decode(&c).expect("base64");
        raw[0] ^= 1; // offset 30 -> 31
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        let cases = [
            ("flipped offset bit", forged.as_str(), fp),
            ("other query", c.as_str(), fingerprint("vitamin c", 10, "")),
            ("other page size", c.as_str(), fingerprint("vitamin d", 20, "")),
            ("other filter", c.as_str(), fingerprint("vitamin d", 10, r#"{"format":"pdf"}"#)),
            ("not base64", "!!!", fp),
            ("truncated", &c[..c.len() - 2], fp),
            ("empty", "", fp),
        ];
        for (what, cursor, fp) in cases {
            let e = key.open(cursor, &fp).expect_err(what);
            assert_eq!((e.status().as_u16(), e.code()), (400, "invalid_cursor"), "{what}");
        }
        let other = CursorKey::from_bytes([8; 32]);
        assert!(other.open(&c, &fp).is_err(), "another server's key does not open it");
    }
}
