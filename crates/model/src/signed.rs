//! Signed links: a URL a third party may fetch without credentials (Slack fetching a graph for an
//! image block) carries an HMAC of what it names, which only aiops can make.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::JobId;

/// Signs and checks `sig` parameters with a key of aiops' own (`notify.link_key`).
#[derive(Clone)]
pub struct LinkSigner {
    key: SecretString,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(********)")
    }
}

impl LinkSigner {
    pub fn new(key: SecretString) -> Self {
        Self { key }
    }

    /// A key of 32 random bytes, for a process that was given none: its links hold until it stops.
    pub fn random() -> Self {
        Self::new(SecretString::from(hex(&rand::random::<[u8; 32]>())))
    }

    fn mac(&self, what: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(what.as_bytes());
        mac
    }

    /// The signature of the graph of job `id`, as hex.
    pub fn graph(&self, id: JobId) -> String {
        hex(&self.mac(&format!("graph:{id}")).finalize().into_bytes())
    }

    /// Whether `sig` is the signature of job `id`'s graph (compared in constant time).
    pub fn verify_graph(&self, id: JobId, sig: &str) -> bool {
        let Some(bytes) = unhex(sig) else {
            return false;
        };
        self.mac(&format!("graph:{id}"))
            .verify_slice(&bytes)
            .is_ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_key_makes_a_signature_that_verifies() {
        let signer = LinkSigner::new(SecretString::from("k1"));
        let id = JobId::new();
        let sig = signer.graph(id);
        assert_eq!(sig.len(), 64);
        assert!(signer.verify_graph(id, &sig));
        assert!(!signer.verify_graph(JobId::new(), &sig), "another job");
        let mut altered = sig.clone().into_bytes();
        altered[0] = if altered[0] == b'a' { b'b' } else { b'a' };
        assert!(!signer.verify_graph(id, std::str::from_utf8(&altered).expect("ascii")));
        assert!(!signer.verify_graph(id, ""));
        assert!(!signer.verify_graph(id, "zz"));
        let other = LinkSigner::new(SecretString::from("k2"));
        assert!(!other.verify_graph(id, &sig), "another key");
        assert!(!format!("{signer:?}").contains("k1"));
    }
}
