//! Secrets by value: before anything a plugin returned (output, error text,
//! log lines) leaves the sandbox, every secret value granted to that call —
//! as itself and as a remote would echo it (URL- and form-encoded, base64,
//! JSON-escaped) — is replaced by `[redacted:<name>]`. Key names alone are
//! not enough: a vendor that answers a token request with a 400 echoing the
//! form puts `client_secret=…` in an error body the plugin passes on.

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::PluginError;
use crate::tenant::Secret;

/// Values shorter than this are not searched for: they would redact common
/// words, and a secret that short protects nothing anyway.
const MIN_SECRET_CHARS: usize = 4;

/// The needles of one call's secrets, longest first (so a secret that
/// contains another is replaced whole).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    needles: Vec<(String, String)>,
}

impl Redactor {
    /// A redactor for `secrets` (name → value).
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a String, &'a Secret)>) -> Self {
        let mut needles = Vec::new();
        for (name, secret) in secrets {
            let value = secret.expose();
            if value.chars().count() < MIN_SECRET_CHARS {
                continue;
            }
            let label = format!("[redacted:{name}]");
            let json = serde_json::to_string(value).unwrap_or_default();
            let encodings = [
                value.to_owned(),
                form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>(),
                percent_encode(value, |b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
                }),
                percent_encode(value, |b| b.is_ascii_alphanumeric()),
                base64::engine::general_purpose::STANDARD.encode(value),
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(value),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value),
                json.trim_matches('"').to_owned(),
            ];
            for encoded in encodings {
                if !encoded.is_empty() && !needles.iter().any(|(n, _)| *n == encoded) {
                    needles.push((encoded, label.clone()));
                }
            }
        }
        needles.sort_by_key(|(needle, _)| std::cmp::Reverse(needle.len()));
        Redactor { needles }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every secret replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (needle, label) in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), label);
            }
        }
        out
    }

    fn text_in_place(&self, text: &mut String) {
        if self
            .needles
            .iter()
            .any(|(needle, _)| text.contains(needle.as_str()))
        {
            *text = self.text(text);
        }
    }

    /// Every string (and key) of `value` redacted.
    pub fn json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => self.text_in_place(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| self.json(item)),
            serde_json::Value::Object(fields) => {
                let taken = std::mem::take(fields);
                for (key, mut item) in taken {
                    self.json(&mut item);
                    fields.insert(self.text(&key), item);
                }
            }
            _ => {}
        }
    }

    /// A typed output with every string redacted. A secret in a field that
    /// must hold a fixed word (a verdict, a kind) makes the output invalid.
    pub fn output<T: Serialize + DeserializeOwned>(&self, output: T) -> Result<T, String> {
        if self.is_empty() {
            return Ok(output);
        }
        let mut value = serde_json::to_value(&output).map_err(|err| err.to_string())?;
        let before = value.clone();
        self.json(&mut value);
        if value == before {
            return Ok(output);
        }
        serde_json::from_value(value).map_err(|err| {
            format!("a granted secret appears in a typed field of the output: {err}")
        })
    }

    /// An error with every text it carries redacted.
    pub fn error(&self, err: PluginError) -> PluginError {
        if self.is_empty() {
            return err;
        }
        match err {
            PluginError::Guest(mut guest) => {
                self.text_in_place(&mut guest.message);
                PluginError::Guest(guest)
            }
            PluginError::Trap { code, message } => PluginError::Trap {
                code: self.text(&code),
                message: message.map(|m| self.text(&m)),
            },
            PluginError::CapabilityDenied { detail } => PluginError::CapabilityDenied {
                detail: self.text(&detail),
            },
            PluginError::InvalidOutput { detail } => PluginError::InvalidOutput {
                detail: self.text(&detail),
            },
            PluginError::Unavailable(detail) => PluginError::Unavailable(self.text(&detail)),
            other => other,
        }
    }
}

/// Every byte but those `keep` allows percent-encoded (`%2D` style), as
/// clients encode form values (RFC 3986 unreserved, or alphanumerics only).
fn percent_encode(value: &str, keep: impl Fn(u8) -> bool) -> String {
    value
        .bytes()
        .map(|b| {
            if keep(b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_of_a_secret_is_replaced() {
        let secrets = [(
            "client_secret".to_owned(),
            Secret::new("s3cr&t+/=x".to_owned()),
        )];
        let redactor = Redactor::new(secrets.iter().map(|(k, v)| (k, v)));
        let b64 = base64::engine::general_purpose::STANDARD.encode("s3cr&t+/=x");
        let text = format!(
            "raw s3cr&t+/=x form {} pct s3cr%26t%2B%2F%3Dx b64 {b64} json {}",
            form_urlencoded::byte_serialize(b"s3cr&t+/=x").collect::<String>(),
            serde_json::to_string("s3cr&t+/=x").unwrap()
        );
        let out = redactor.text(&text);
        assert!(!out.contains("s3cr"), "{out}");
        assert_eq!(out.matches("[redacted:client_secret]").count(), 5, "{out}");
        let mut value = serde_json::json!({"echo": ["s3cr&t+/=x"], "s3cr&t+/=x": 1});
        redactor.json(&mut value);
        assert!(!value.to_string().contains("s3cr"), "{value}");
    }
}
