//! Bearer-token check: the token's SHA-256 against the presented one's, compared in constant
//! time (hashing first makes the comparison independent of the lengths too).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ServeError;

/// The service's token, kept only as its digest.
#[derive(Clone)]
pub struct Token([u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// A token from its text (surrounding whitespace, e.g. a file's final newline, dropped);
    /// at least 16 characters of visible ASCII.
    pub fn new(text: &str) -> Result<Self, ServeError> {
        let t = text.trim();
        if t.len() < 16 {
            return Err(ServeError::Token(format!(
                "{} characters; use at least 16 (e.g. `openssl rand -hex 32`)",
                t.len()
            )));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServeError::Token(
                "use visible ASCII only (no spaces or control characters)".into(),
            ));
        }
        Ok(Self(Sha256::digest(t.as_bytes()).into()))
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        let Some(presented) = header
            .filter(|h| h.len() > 7 && h[..7].eq_ignore_ascii_case(b"bearer "))
            .map(|h| &h[7..])
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(&self.0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_bearer_token() {
        let t = Token::new("0123456789abcdef0123\n").unwrap();
        assert!(t.accepts(Some(b"Bearer 0123456789abcdef0123")));
        assert!(t.accepts(Some(b"bearer 0123456789abcdef0123")));
        for bad in [
            &b"Bearer 0123456789abcdef012"[..],
            b"Bearer 0123456789abcdef01234",
            b"0123456789abcdef0123",
            b"Bearer ",
        ] {
            assert!(!t.accepts(Some(bad)));
        }
        assert!(!t.accepts(None));
        assert!(Token::new("short").is_err());
        assert!(Token::new("0123456789 abcdef0123").is_err());
    }
}
