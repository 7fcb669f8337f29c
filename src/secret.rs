//! Secrets (the JWT signing secret, the Cassandra password): where they may
//! come from, and a type that never shows them.
//!
//! A secret comes from its environment variable or from a file named by a flag,
//! never from a flag itself: `ps` shows every process's arguments to every user
//! of the machine, and shells keep them in their history. A [`Secret`]'s
//! `Debug` prints `<redacted>`, so a `{:?}` of the config or of the Cassandra
//! settings cannot put it in a log. This module reads the environment and
//! files and nothing else; what a secret must look like (a JWT secret's
//! length, say) is checked by the code that uses it.

use std::fmt;
use std::path::Path;

use crate::config::ConfigError;

/// A secret value; `Debug` shows `<redacted>`, and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one call that needs it (signing, logging in).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where one secret may come from: an environment variable, or a file named
/// by a flag (itself settable through its own `…_FILE` variable).
#[derive(Debug, Clone, Copy)]
pub struct SecretSource {
    /// The environment variable that may hold the secret, e.g. `RESUME_JWT_SECRET`.
    pub env: &'static str,
    /// The knob naming a file that may hold it, as errors name it, e.g.
    /// `--jwt-secret-file / RESUME_JWT_SECRET_FILE`.
    pub file_knob: &'static str,
}

impl SecretSource {
    /// Reads the secret from the process environment or from `file`; `None`
    /// when neither is set. An empty variable counts as unset.
    pub fn read(&self, file: Option<&Path>) -> Result<Option<Secret>, ConfigError> {
        let from_env = match std::env::var(self.env) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(ConfigError::new(self.env, "is not valid UTF-8"));
            }
        };
        self.resolve(from_env, file)
    }

    /// [`read`](Self::read) with the environment variable's value given.
    pub fn resolve(
        &self,
        from_env: Option<String>,
        file: Option<&Path>,
    ) -> Result<Option<Secret>, ConfigError> {
        let from_env = from_env.filter(|value| !value.is_empty());
        match (from_env, file) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                self.file_knob,
                format!("{} is set too; give the secret one way", self.env),
            )),
            (Some(value), None) => Ok(Some(Secret::new(value))),
            (None, Some(path)) => read_secret_file(self.file_knob, path).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// The content of a secret file, less one final line break (editors and
/// `echo` add one; a secret never ends with one).
fn read_secret_file(knob: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(knob, format!("cannot read {}: {e}", path.display())))?;
    let secret = text
        .strip_suffix('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(ConfigError::new(
            knob,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Secret::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: SecretSource = SecretSource {
        env: "RESUME_TEST_SECRET",
        file_knob: "--test-secret-file / RESUME_TEST_SECRET_FILE",
    };

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(
            format!("{:?}", Some(secret.clone())),
            "Some(Secret(<redacted>))"
        );
        assert_eq!(secret.expose(), "hunter2-hunter2");
    }

    #[test]
    fn a_secret_comes_from_the_environment_or_a_file_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-the-file\n").unwrap();

        let from_env = SOURCE.resolve(Some("from-env".into()), None).unwrap();
        assert_eq!(from_env, Some(Secret::new("from-env")));
        let from_file = SOURCE.resolve(None, Some(&file)).unwrap();
        assert_eq!(from_file, Some(Secret::new("from-the-file")));
        assert_eq!(SOURCE.resolve(None, None).unwrap(), None);
        assert_eq!(SOURCE.resolve(Some(String::new()), None).unwrap(), None);

        let err = SOURCE
            .resolve(Some("from-env".into()), Some(&file))
            .unwrap_err();
        assert!(err.to_string().contains("--test-secret-file"), "{err}");
        assert!(err.to_string().contains("RESUME_TEST_SECRET"), "{err}");
    }

    #[test]
    fn only_one_final_line_break_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        for (content, expected) in [
            ("s3cret", "s3cret"),
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret \n\n", "s3cret \n"),
            ("  s3cret  ", "  s3cret  "),
        ] {
            std::fs::write(&file, content).unwrap();
            let secret = SOURCE.resolve(None, Some(&file)).unwrap().unwrap();
            assert_eq!(secret.expose(), expected, "{content:?}");
        }
    }

    #[test]
    fn unreadable_or_empty_files_name_the_knob() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = SOURCE.resolve(None, Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("--test-secret-file"), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = SOURCE.resolve(None, Some(&empty)).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
    }
}
