//! Plugin secrets at rest: XChaCha20-Poly1305 under a master key read from
//! a file outside the data directory. Each secret is bound (as associated
//! data) to its tenant, plugin and name, so a ciphertext moved to another
//! slot does not decrypt. Plaintext exists only in memory, in the grant of
//! the one plugin it belongs to.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::audit::{AuditKey, KeyError};
use crate::tenant::{Secret, TenantId};

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The master key file.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Wrong key, or the ciphertext was altered or moved.
    #[error("secret {0} cannot be decrypted: wrong master key, or the stored value was altered")]
    Open(String),
    /// Encryption failed.
    #[error("cannot encrypt secret")]
    Seal,
}

/// Seals and opens secrets.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

fn aad(tenant: &TenantId, plugin: &str, name: &str) -> Vec<u8> {
    format!("rampart-secret\u{0}{tenant}\u{0}{plugin}\u{0}{name}").into_bytes()
}

impl SecretBox {
    /// Loads (or creates, mode 0600) the master key; refuses one inside `data_dir`.
    pub fn open(master_key: &Path, data_dir: Option<&Path>) -> Result<Self, SecretError> {
        let key = AuditKey::load_or_create(master_key, data_dir)?;
        Self::from_key(key.bytes())
    }

    /// From raw key bytes (at least 32; the first 32 are used).
    pub fn from_key(bytes: &[u8]) -> Result<Self, SecretError> {
        let key: [u8; 32] = bytes
            .get(..32)
            .and_then(|b| b.try_into().ok())
            .ok_or(SecretError::Seal)?;
        Ok(SecretBox {
            cipher: XChaCha20Poly1305::new(&key.into()),
        })
    }

    /// nonce (24 bytes) || ciphertext.
    pub fn seal(
        &self,
        tenant: &TenantId,
        plugin: &str,
        name: &str,
        secret: &Secret,
    ) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|_| SecretError::Seal)?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: &aad(tenant, plugin, name),
                },
            )
            .map_err(|_| SecretError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`SecretBox::seal`] produced for the same slot.
    pub fn unseal(
        &self,
        tenant: &TenantId,
        plugin: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<Secret, SecretError> {
        let fail = || SecretError::Open(format!("{tenant}/{plugin}/{name}"));
        if sealed.len() < 24 {
            return Err(fail());
        }
        let (nonce, body) = sealed.split_at(24);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad(tenant, plugin, name),
                },
            )
            .map_err(|_| fail())?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| fail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_in_their_slot_with_their_key() {
        let tenant = TenantId::new("acme").unwrap_or_else(|err| panic!("{err}"));
        let sealer = SecretBox::from_key(&[7u8; 32]).unwrap_or_else(|err| panic!("{err}"));
        let sealed = sealer
            .seal(&tenant, "edl", "token", &Secret::new("s3cr3t"))
            .unwrap_or_else(|err| panic!("{err}"));
        assert!(!sealed.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(
            sealer
                .unseal(&tenant, "edl", "token", &sealed)
                .map(|s| s.expose().to_owned())
                .ok(),
            Some("s3cr3t".to_owned())
        );
        assert!(
            sealer.unseal(&tenant, "other", "token", &sealed).is_err(),
            "moved to another plugin"
        );
        let stranger = SecretBox::from_key(&[8u8; 32]).unwrap_or_else(|err| panic!("{err}"));
        assert!(
            stranger.unseal(&tenant, "edl", "token", &sealed).is_err(),
            "another key"
        );
    }
}
