//! Names of everything the registry keeps (functions, models, ...): they become store
//! keys and URL segments, so they are checked before anything is touched.

/// A checked name: `[a-z0-9][a-z0-9._-]{0,62}`. Shared, so that the
/// copies a call makes (cache keys, a rollout's routed closure) cost no
/// allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(std::sync::Arc<str>);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid name {given:?}: {reason}; names are 1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
)]
pub struct InvalidName {
    /// The name as given (shortened if very long).
    pub given: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Name {
    /// Check `name`.
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        let refuse = |reason| InvalidName {
            given: name.chars().take(80).collect(),
            reason,
        };
        let Some(first) = name.bytes().next() else {
            return Err(refuse("it is empty"));
        };
        if name.len() > 63 {
            return Err(refuse("it is longer than 63 characters"));
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(refuse("it must start with a lower-case letter or a digit"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(refuse(
                "it contains a character other than a-z, 0-9, '.', '_' or '-'",
            ));
        }
        Ok(Self(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_refuses_the_rest() {
        for ok in ["scaler", "json-to-tensor", "v1.2_x", "0abc"] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "../x",
            "Upper",
            "-lead",
            ".hidden",
            "a/b",
            "sp ace",
            "ümlaut",
            long.as_str(),
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Name::parse("a".repeat(63).as_str()).unwrap().as_str().len(),
            63
        );
    }
}
