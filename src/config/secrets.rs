//! Secrets: a [`Secret`] is never printed; a [`SecretRef`] says where one is (inline, an
//! environment variable, a file, a systemd credential) and is read only by the code that
//! uses it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::ConfigError;
use super::parse::{Ctx, line_col};

/// A secret value: printable only on purpose, through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it (an HTTP request, SMTP AUTH).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with this secret masked in every form a server may echo it in: as it is,
    /// percent-encoded and base64-encoded ([`crate::text::scrub`]). Every error text that
    /// may hold a server's words goes through this before it is shown or stored.
    pub fn scrub(&self, text: &str) -> String {
        crate::text::scrub(text, &self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret is, as the config names it; read by [`SecretRef::resolve`] only when a
/// command needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    pub(super) source: SecretSource,
    /// The config file, and the line, column and key that named the secret.
    file: String,
    line: usize,
    column: usize,
    key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SecretSource {
    Inline(Secret),
    Env(String),
    File(PathBuf),
    /// A file of `$CREDENTIALS_DIRECTORY` (systemd's `LoadCredential=`).
    Credential(String),
}

/// The variable systemd sets to the directory of a service's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

impl From<Secret> for SecretRef {
    /// A secret given in code (tests, the demo portal): there is nothing to read.
    fn from(secret: Secret) -> SecretRef {
        SecretRef { source: SecretSource::Inline(secret), file: String::new(), line: 0, column: 0, key: String::new() }
    }
}

impl SecretRef {
    /// Reads the secret where the config says it is. The error names the config file, line
    /// and key, and never the value.
    pub fn resolve(&self) -> Result<Secret, ConfigError> {
        self.with_credentials_dir(std::env::var_os(CREDENTIALS_DIRECTORY).as_deref())
    }

    /// [`SecretRef::resolve`] with the credentials directory given.
    pub(super) fn with_credentials_dir(&self, credentials: Option<&std::ffi::OsStr>) -> Result<Secret, ConfigError> {
        let read_file = |path: &Path| match std::fs::read_to_string(path) {
            Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_owned())),
            Ok(_) => Err(self.err(format!("{} is empty", path.display()))),
            Err(e) => Err(self.err(format!("cannot read {}: {e}", path.display()))),
        };
        match &self.source {
            SecretSource::Inline(secret) => Ok(secret.clone()),
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_owned())),
                _ => Err(self.err(format!("environment variable {name} is not set"))),
            },
            SecretSource::File(path) => read_file(path),
            SecretSource::Credential(name) => match credentials {
                Some(dir) if !dir.is_empty() => read_file(&Path::new(dir).join(name)),
                _ => Err(self.err(format!(
                    "credential {name}: ${CREDENTIALS_DIRECTORY} is not set (systemd sets it for a service with \
                     LoadCredential=; by hand, set it to the folder holding the file {name})"
                ))),
            },
        }
    }

    /// [`SecretRef::resolve`], then `check` on the value; its complaint is a config error too.
    pub fn resolve_checked(&self, check: impl Fn(&str) -> Result<(), String>) -> Result<Secret, ConfigError> {
        let secret = self.resolve()?;
        check(secret.expose()).map_err(|m| self.err(m))?;
        Ok(secret)
    }

    /// Where the secret is read from, for `check --offline`; never the value.
    pub fn describe(&self) -> String {
        match &self.source {
            SecretSource::Inline(_) => "given inline".to_owned(),
            SecretSource::Env(name) => format!("from environment variable {name}"),
            SecretSource::File(path) => format!("from file {}", path.display()),
            SecretSource::Credential(name) => format!("from systemd credential {name}"),
        }
    }

    fn err(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            key: self.key.clone(),
            message,
        }
    }
}

/// The forms a secret may be given in; at most one is.
pub(super) struct SecretForms {
    pub(super) inline: Option<String>,
    pub(super) env: Option<Spanned<String>>,
    pub(super) file: Option<Spanned<String>>,
    pub(super) credential: Option<Spanned<String>>,
}

impl Ctx<'_> {
    /// Where one secret is, from its inline, `_env`, `_file` or `_credential` form; at most
    /// one may be given. Nothing is read here ([`SecretRef::resolve`]).
    pub(super) fn secret(
        &self,
        given: SecretForms,
        key: &str,
        section: Range<usize>,
    ) -> Result<Option<SecretRef>, ConfigError> {
        let SecretForms { inline, env, file, credential } = given;
        let count = inline.is_some() as u8 + env.is_some() as u8 + file.is_some() as u8 + credential.is_some() as u8;
        if count > 1 {
            return Err(self.err(
                section,
                key,
                format!("give only one of {key}, {key}_env, {key}_file, {key}_credential"),
            ));
        }
        let at = |span: Range<usize>, key: String, source: SecretSource| {
            let (line, column) = line_col(self.text, span.start);
            SecretRef { source, file: self.name.to_owned(), line, column, key }
        };
        if let Some(v) = inline {
            return Ok(Some(at(section, key.to_owned(), SecretSource::Inline(Secret(v)))));
        }
        let (form, value) = match (env, file, credential) {
            (Some(v), _, _) => ("env", v),
            (_, Some(v), _) => ("file", v),
            (_, _, Some(v)) => ("credential", v),
            _ => return Ok(None),
        };
        let form_key = format!("{key}_{form}");
        let name = value.get_ref().trim();
        let source = match form {
            "env" if !name.is_empty() => SecretSource::Env(name.to_owned()),
            "file" if !name.is_empty() => SecretSource::File(PathBuf::from(name)),
            "credential" if !name.is_empty() && !name.contains('/') && name != "." && name != ".." => {
                SecretSource::Credential(name.to_owned())
            }
            "credential" => {
                return Err(self.err(
                    value.span(),
                    &form_key,
                    "expected the name of a credential (LoadCredential=NAME:...)",
                ));
            }
            _ => return Err(self.err(value.span(), &form_key, "must not be empty")),
        };
        Ok(Some(at(value.span(), form_key, source)))
    }
}
