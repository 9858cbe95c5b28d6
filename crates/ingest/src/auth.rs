//! Optional bearer-token and basic auth, as Alertmanager's `http_config.authorization` and
//! `basic_auth` send them. Secrets are compared in constant time, as hashes so that not even their
//! length leaks.

use actix_web::HttpRequest;
use actix_web::http::header;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The credentials a request may present. With none configured, every request passes.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    bearer: Option<SecretString>,
    basic: Option<(String, SecretString)>,
}

impl Auth {
    pub fn new(bearer: Option<SecretString>, basic: Option<(String, SecretString)>) -> Self {
        Self { bearer, basic }
    }

    pub fn is_enabled(&self) -> bool {
        self.bearer.is_some() || self.basic.is_some()
    }

    /// Whether the request carries one of the configured credentials.
    pub fn allows(&self, req: &HttpRequest) -> bool {
        if !self.is_enabled() {
            return true;
        }
        let Some(value) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self
                .bearer
                .as_ref()
                .is_some_and(|token| same(token.expose_secret(), credentials));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let Some((user, password)) = &self.basic else {
                return false;
            };
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
                return false;
            };
            let decoded = String::from_utf8_lossy(&decoded);
            let (given_user, given_password) = decoded.split_once(':').unwrap_or((&decoded, ""));
            // Both comparisons always run, so timing does not tell which one failed.
            let user_ok = same(user, given_user);
            let password_ok = same(password.expose_secret(), given_password);
            return user_ok & password_ok;
        }
        false
    }
}

fn same(expected: &str, given: &str) -> bool {
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(given.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(authorization: Option<&str>) -> HttpRequest {
        let mut req = TestRequest::default();
        if let Some(value) = authorization {
            req = req.insert_header((header::AUTHORIZATION, value));
        }
        req.to_http_request()
    }

    #[test]
    fn bearer_and_basic_are_checked() {
        let basic = ("am".to_owned(), SecretString::from("pw"));
        let auth = Auth::new(Some(SecretString::from("tok")), Some(basic));
        assert!(auth.allows(&request(Some("Bearer tok"))));
        assert!(!auth.allows(&request(Some("Bearer tok2"))));
        assert!(!auth.allows(&request(None)));
        let good = base64::engine::general_purpose::STANDARD.encode("am:pw");
        let bad = base64::engine::general_purpose::STANDARD.encode("am:px");
        assert!(auth.allows(&request(Some(&format!("Basic {good}")))));
        assert!(!auth.allows(&request(Some(&format!("Basic {bad}")))));
        assert!(!auth.allows(&request(Some("Basic !!!"))));
        assert!(Auth::default().allows(&request(None)));
    }
}
