//! Text features for the reference rankers: a bag of words learned from the training texts, and
//! the benchmark's true scorer values.

use std::collections::HashMap;

/// Lower-cased tokens of a text: runs of alphanumerics (with inner apostrophes), each other
/// non-space character on its own ('?', '!', '-', …), and `<nl>` for a line break, so that
/// punctuation and list structure are visible to the bag of words.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |w: &mut String, out: &mut Vec<String>| {
        if !w.is_empty() {
            out.push(std::mem::take(w));
        }
    };
    for c in text.chars() {
        if c.is_alphanumeric() || (c == '\'' && !word.is_empty()) {
            word.extend(c.to_lowercase());
            continue;
        }
        flush(&mut word, &mut out);
        if c == '\n' {
            out.push("<nl>".into());
        } else if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Unigram and bigram counts of a text.
fn grams(text: &str) -> HashMap<String, usize> {
    let t = tokens(text);
    let mut m = HashMap::new();
    for (i, a) in t.iter().enumerate() {
        *m.entry(a.clone()).or_insert(0) += 1;
        if let Some(b) = t.get(i + 1) {
            *m.entry(format!("{a} {b}")).or_insert(0) += 1;
        }
    }
    m
}

/// A bag of unigrams and bigrams with document frequency ≥ `min_df` over a set of training
/// texts; a text's features are `log(1 + count)` divided by their standard deviation over those
/// texts (centring cancels in pair differences).
#[derive(Clone, Debug)]
pub struct BagOfWords {
    index: HashMap<String, usize>,
    scale: Vec<f64>,
}

impl BagOfWords {
    /// Learns the vocabulary and scales from `texts` (each text counted once).
    pub fn fit<'a>(texts: impl IntoIterator<Item = &'a str>, min_df: usize) -> Self {
        let docs: Vec<HashMap<String, usize>> = texts.into_iter().map(grams).collect();
        let mut df: HashMap<&str, usize> = HashMap::new();
        for d in &docs {
            for g in d.keys() {
                *df.entry(g.as_str()).or_insert(0) += 1;
            }
        }
        // Sorted so that feature indices do not depend on hash order.
        let mut vocab: Vec<&str> = df
            .iter()
            .filter(|(_, &n)| n >= min_df.max(1))
            .map(|(g, _)| *g)
            .collect();
        vocab.sort_unstable();
        let index: HashMap<String, usize> = vocab
            .iter()
            .enumerate()
            .map(|(i, g)| (g.to_string(), i))
            .collect();
        let n = docs.len().max(1) as f64;
        let (mut sum, mut sq) = (vec![0.0; vocab.len()], vec![0.0; vocab.len()]);
        for d in &docs {
            for (g, &c) in d {
                if let Some(&j) = index.get(g) {
                    let v = (c as f64).ln_1p();
                    sum[j] += v;
                    sq[j] += v * v;
                }
            }
        }
        let scale = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| {
                let var = q / n - (s / n).powi(2);
                if var > 1e-12 {
                    var.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        Self { index, scale }
    }

    /// Vocabulary size.
    pub fn len(&self) -> usize {
        self.scale.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }

    /// Sparse standardised features of a text, sorted by index.
    pub fn features(&self, text: &str) -> Vec<(usize, f64)> {
        let mut v: Vec<(usize, f64)> = grams(text)
            .into_iter()
            .filter_map(|(g, c)| {
                let j = *self.index.get(&g)?;
                Some((j, (c as f64).ln_1p() / self.scale[j]))
            })
            .collect();
        v.sort_unstable_by_key(|&(j, _)| j);
        v
    }
}

/// `a − b` of two sparse vectors sorted by index.
pub fn sparse_diff(a: &[(usize, f64)], b: &[(usize, f64)]) -> Vec<(usize, f64)> {
    let (mut i, mut k, mut out) = (0, 0, Vec::with_capacity(a.len() + b.len()));
    while i < a.len() || k < b.len() {
        match (a.get(i), b.get(k)) {
            (Some(&(ja, va)), Some(&(jb, vb))) if ja == jb => {
                out.push((ja, va - vb));
                i += 1;
                k += 1;
            }
            (Some(&(ja, va)), Some(&(jb, _))) if ja < jb => {
                out.push((ja, va));
                i += 1;
            }
            (Some(&(ja, va)), None) => {
                out.push((ja, va));
                i += 1;
            }
            (_, Some(&(jb, vb))) => {
                out.push((jb, -vb));
                k += 1;
            }
            (None, None) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_punctuation_and_lines() {
        assert_eq!(
            tokens("Don't panic!\n- Maybe?"),
            ["don't", "panic", "!", "<nl>", "-", "maybe", "?"]
        );
    }

    #[test]
    fn vocabulary_respects_document_frequency() {
        let texts = ["a b", "a c", "a b"];
        let bow = BagOfWords::fit(texts, 2);
        // "a", "b" and the bigram "a b" reach df 2; "c" and "a c" do not.
        assert_eq!(bow.len(), 3);
        assert!(bow.features("c").is_empty());
        assert_eq!(bow.features("a b").len(), 3);
    }

    #[test]
    fn sparse_difference_merges_indices() {
        let d = sparse_diff(&[(0, 1.0), (2, 2.0)], &[(1, 1.0), (2, 0.5), (3, 1.0)]);
        assert_eq!(d, vec![(0, 1.0), (1, -1.0), (2, 1.5), (3, -1.0)]);
    }
}
