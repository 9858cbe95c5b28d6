//! Secrets in configuration: they are `SecretString`s that print as a mask, and each can also be read
//! from a file named by a sibling `*_file` key (for Docker and Kubernetes secrets).

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

/// What a set secret prints as in `aiops check-config`.
pub const MASK: &str = "********";

/// Serializes a secret as [`MASK`] when it is set, so effective configurations can be printed.
pub fn serialize_masked<S: Serializer>(
    value: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_some(MASK),
        None => s.serialize_none(),
    }
}

/// Fills `value` from `file` when the file key is set. Setting both is an error, because one of the
/// two would be silently ignored. A trailing newline in the file is dropped.
pub fn resolve_file(
    key: &str,
    value: &mut Option<SecretString>,
    file: Option<&Path>,
) -> Result<(), String> {
    let Some(path) = file else {
        return Ok(());
    };
    if value.is_some() {
        return Err(format!("set either `{key}` or `{key}_file`, not both"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{key}_file` {}: {e}", path.display()))?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(format!("`{key}_file` {} is empty", path.display()));
    }
    *value = Some(SecretString::from(trimmed.to_owned()));
    Ok(())
}

/// Treats an empty secret (as environment variables often give) as unset.
pub fn non_empty(value: Option<SecretString>) -> Option<SecretString> {
    value.filter(|v| !v.expose_secret().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_fills_secret_and_trims_newline() {
        let dir = std::env::temp_dir().join(format!("aiops-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("token");
        std::fs::write(&path, "s3cret\n").expect("write");
        let mut value = None;
        resolve_file("auth.bearer_token", &mut value, Some(&path)).expect("resolves");
        assert_eq!(value.expect("set").expose_secret(), "s3cret");
        let mut both = Some(SecretString::from("x"));
        let err = resolve_file("auth.bearer_token", &mut both, Some(&path)).expect_err("both set");
        assert!(err.contains("not both"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn masked_secret_never_prints_its_value() {
        let v = Some(SecretString::from("hunter2"));
        let json = serde_json::to_string(&Wrapper(v)).expect("serialize");
        assert_eq!(json, format!("\"{MASK}\""));
    }

    struct Wrapper(Option<SecretString>);
    impl serde::Serialize for Wrapper {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize_masked(&self.0, s)
        }
    }
}
