//! Log template mining with Drain (He et al., "Drain: An Online Log Parsing Approach with Fixed Depth
//! Tree", ICWS 2017). Lines are tokenized on whitespace after masking the obviously variable parts
//! (UUIDs, IPs, hex ids, numbers). The fixed-depth tree sorts a line by its token count, then by its
//! first token; within that leaf the line joins the most similar template when enough tokens are equal
//! position by position, and the positions that differ become `<*>`. Otherwise it starts a template.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

/// A token that stands for a variable part.
pub const WILDCARD: &str = "<*>";

/// Masks applied to a line before tokenizing, most specific first.
static MASKS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
        r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b",
        r"\b0x[0-9a-fA-F]+\b",
        r"\b[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b",
        r"\b[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*[0-9][0-9a-fA-F]*\b",
        r"\b\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:ns|us|µs|ms|s|m|h|d|b|B|KiB|MiB|GiB|kb|mb|gb|%)?\b",
    ]
    .iter()
    .map(|p| Regex::new(p).unwrap_or_else(|e| unreachable!("mask {p} is valid: {e}")))
    .collect()
});

/// One template and how many lines it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub tokens: Vec<String>,
    pub size: usize,
}

impl Cluster {
    /// The template as text, `<*>` where lines differ.
    pub fn template(&self) -> String {
        self.tokens.join(" ")
    }
}

/// A Drain miner. Feed it lines with [`Drain::add`]; read the templates with [`Drain::clusters`].
#[derive(Debug, Clone)]
pub struct Drain {
    /// A line joins a template when at least this share of its tokens are equal (0–1).
    similarity: f64,
    /// New templates stop being created past this many; further lines join the closest one.
    max_clusters: usize,
    /// Leaves of the tree: (token count, first token) → templates.
    leaves: HashMap<(usize, String), Vec<usize>>,
    clusters: Vec<Cluster>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new(0.5, 1000)
    }
}

impl Drain {
    pub fn new(similarity: f64, max_clusters: usize) -> Self {
        Self {
            similarity,
            max_clusters: max_clusters.max(1),
            leaves: HashMap::new(),
            clusters: Vec::new(),
        }
    }

    /// Adds a line; returns the index of the template it joined or started.
    pub fn add(&mut self, line: &str) -> usize {
        let tokens = tokenize(line);
        let first = match tokens.first() {
            Some(t) if !t.chars().any(|c| c.is_ascii_digit()) => t.clone(),
            _ => WILDCARD.to_owned(),
        };
        let key = (tokens.len(), first);
        let candidates = self.leaves.get(&key).map(Vec::as_slice).unwrap_or_default();
        let best = candidates
            .iter()
            .map(|&i| (i, similarity(&self.clusters[i].tokens, &tokens)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let full = self.clusters.len() >= self.max_clusters;
        match best {
            Some((i, sim)) if sim >= self.similarity || full => {
                let cluster = &mut self.clusters[i];
                for (t, new) in cluster.tokens.iter_mut().zip(&tokens) {
                    if t != new {
                        *t = WILDCARD.to_owned();
                    }
                }
                cluster.size += 1;
                i
            }
            _ => {
                let i = self.clusters.len();
                self.clusters.push(Cluster { tokens, size: 1 });
                self.leaves.entry(key).or_default().push(i);
                i
            }
        }
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }
}

/// Share of positions where the template and the line agree; a wildcard agrees with anything but
/// counts half, so a line prefers the template with fewer wildcards.
fn similarity(template: &[String], tokens: &[String]) -> f64 {
    if template.is_empty() {
        return 1.0;
    }
    let score: f64 = template
        .iter()
        .zip(tokens)
        .map(|(t, n)| match (t == n, t == WILDCARD) {
            (true, _) => 1.0,
            (false, true) => 0.5,
            (false, false) => 0.0,
        })
        .sum();
    score / template.len() as f64
}

fn tokenize(line: &str) -> Vec<String> {
    let mut masked = line.to_owned();
    for mask in MASKS.iter() {
        if let std::borrow::Cow::Owned(m) = mask.replace_all(&masked, WILDCARD) {
            masked = m;
        }
    }
    masked.split_whitespace().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the test needs no RNG crate and always sees the same log.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn mines_known_templates_with_exact_counts_among_noise() {
        let mut rng = Lcg(7);
        let words = [
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
            "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
        ];
        let mut drain = Drain::default();
        let mut expected = [0usize; 3];
        for _ in 0..600 {
            let line = match rng.next(4) {
                0 => {
                    expected[0] += 1;
                    format!(
                        "connection to db-{} refused after {}ms",
                        rng.next(9),
                        rng.next(5000)
                    )
                }
                1 => {
                    expected[1] += 1;
                    format!(
                        "user {} logged in from 10.0.{}.{}",
                        rng.next(100_000),
                        rng.next(255),
                        rng.next(255)
                    )
                }
                2 => {
                    expected[2] += 1;
                    format!(
                        "request GET /api/items/{} took {}ms status=200 trace={:x}{:x}",
                        rng.next(1000),
                        rng.next(900),
                        rng.next(u64::from(u32::MAX)) | 0xa000_0000,
                        rng.next(u64::from(u32::MAX))
                    )
                }
                _ => (0..3 + rng.next(5))
                    .map(|_| words[rng.next(words.len() as u64) as usize])
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            drain.add(&line);
        }
        let find = |template: &str| {
            drain
                .clusters()
                .iter()
                .find(|c| c.template() == template)
                .unwrap_or_else(|| {
                    let all: Vec<String> = drain.clusters().iter().map(Cluster::template).collect();
                    panic!("no template {template:?} among {all:#?}")
                })
                .size
        };
        assert_eq!(find("connection to db-<*> refused after <*>"), expected[0]);
        assert_eq!(find("user <*> logged in from <*>"), expected[1]);
        assert_eq!(
            find("request GET /api/items/<*> took <*> status=<*> trace=<*>"),
            expected[2]
        );
        // The three templates are the largest: noise never outgrows a real template.
        let mut sizes: Vec<usize> = drain.clusters().iter().map(|c| c.size).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let mut known = expected.to_vec();
        known.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(sizes[..3], known[..]);
    }

    #[test]
    fn identical_lines_make_one_template() {
        let mut drain = Drain::default();
        for _ in 0..5 {
            drain.add("OOMKilled: container api exceeded its memory limit");
        }
        assert_eq!(drain.clusters().len(), 1);
        assert_eq!(drain.clusters()[0].size, 5);
        assert_eq!(
            drain.clusters()[0].template(),
            "OOMKilled: container api exceeded its memory limit"
        );
    }
}
