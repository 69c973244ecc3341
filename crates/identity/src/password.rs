//! Password hashing (bcrypt) and the security-compliance rules.

use crate::error::{Error, Result};

/// bcrypt only reads the first 72 bytes; longer passwords are refused rather
/// than silently truncated.
pub const MAX_BCRYPT_BYTES: usize = 72;

pub async fn hash(password: &str, cost: u32) -> Result<String> {
    if password.len() > MAX_BCRYPT_BYTES {
        return Err(Error::invalid(format!(
            "Invalid input for field 'password': the password is longer than {MAX_BCRYPT_BYTES} bytes."
        )));
    }
    let password = password.to_string();
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .map_err(|e| Error::Internal(format!("hash task: {e}")))?
        .map_err(|e| Error::Internal(format!("bcrypt: {e}")))
}

/// Checks a password against a stored hash. Never errors on a mismatch or a
/// malformed hash: both are simply `false`.
pub async fn verify(password: &str, hash: &str) -> bool {
    if password.len() > MAX_BCRYPT_BYTES {
        return false;
    }
    let password = password.to_string();
    let hash = hash.to_string();
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}
