//! [`Password`]: a secret string that never shows itself in `Debug` output.

use std::fmt;

/// A password (or `sslpassword`): its `Debug` prints `Password(<redacted>)`, it has no
/// `Display`, and the only way to read it is the explicit [`Password::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(String);

impl Password {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that must send it (authentication, a child's
    /// `PGPASSWORD`). Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string (libpq treats an empty password as none).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        // Best effort: overwrite the bytes before the allocation is released. Replacing the
        // contents with zero bytes keeps the `String` valid UTF-8 at every step.
        let len = self.0.len();
        self.0.clear();
        self.0.extend(std::iter::repeat_n('\0', len));
        std::hint::black_box(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let p = Password::new("hunter2");
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        assert_eq!(format!("{:#?}", Some(p.clone())), "Some(\n    Password(<redacted>),\n)");
        assert_eq!(p.expose(), "hunter2");
        assert!(!p.is_empty());
        assert!(Password::default().is_empty());
    }
}
