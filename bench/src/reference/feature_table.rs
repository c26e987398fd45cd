//! The reference rankers' features as a frozen feature table (`vrf-bench features`), so the
//! learned methods can be fitted on the benchmark's truth instead of a backbone's embeddings
//! (docs/features.md): the true scorers, the true scorers plus noise, or the bag of words.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use vrf_data::synth::{SynthMeta, N_SCORERS};
use vrf_data::{Dataset, FeatureKey, FeatureTable};
use vrf_trainer::error::{Result, TrainError};

use super::{check_meta, train_bag_of_words};

/// Which vectors a table holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    /// The generator's normalised true scorers of the response (what the true rankers use).
    True,
    /// The true scorers plus i.i.d. Gaussian noise of variance (mean per-component variance of
    /// the true vectors) / `snr`.
    Noisy {
        /// Signal-to-noise ratio (> 0).
        snr: f64,
        /// Seed of the noise.
        seed: u64,
    },
    /// The bag-of-words ranker's features (fitted on the training texts), dense, restricted to
    /// the `max_dims` features found in the most training texts.
    Bow {
        /// Most components kept (> 0).
        max_dims: usize,
    },
}

/// One row per unique `(prompt, response)` of `ds`, keyed by the pair, and with `prompts` one
/// per unique `(prompt, "")` after them (PAL-B's prompt embedding: the vectors of an empty
/// response); `meta` (the benchmark's side-file) is needed by the true and noisy sources;
/// `origin` names the table in messages.
pub fn feature_table(
    ds: &Dataset,
    meta: Option<&SynthMeta>,
    source: Source,
    prompts: bool,
    origin: &Path,
) -> Result<FeatureTable> {
    let (all, _) = vrf_trainer::features::table_texts(ds, prompts);
    // The data's own texts come first in `all`; the noise scale is theirs alone, so adding the
    // prompt rows changes none of their vectors.
    let n_texts = ds.texts().texts.len();
    let keys: Vec<FeatureKey> = all
        .iter()
        .map(|(p, r)| FeatureKey::Pair {
            prompt: p.clone(),
            response: r.clone(),
        })
        .collect();
    let truth = |meta: Option<&SynthMeta>| -> Result<Vec<f64>> {
        let meta = meta.ok_or_else(|| {
            TrainError::Other(
                "the true and noisy sources need the benchmark's *.synth_meta.json side-file"
                    .into(),
            )
        })?;
        check_meta(ds, meta)?;
        Ok(all.iter().flat_map(|(_, r)| meta.stats.score(r)).collect())
    };
    let (dim, values) = match source {
        Source::True => (N_SCORERS, truth(meta)?),
        Source::Noisy { snr, seed } => {
            if !(snr.is_finite() && snr > 0.0) {
                return Err(TrainError::Other(format!(
                    "--snr must be a positive number, got {snr}"
                )));
            }
            let mut v = truth(meta)?;
            let sd = (mean_variance(&v[..n_texts * N_SCORERS], N_SCORERS) / snr).sqrt();
            let noise = Normal::new(0.0, sd)
                .map_err(|e| TrainError::Other(format!("noise of sd {sd}: {e}")))?;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            v.iter_mut().for_each(|x| *x += noise.sample(&mut rng));
            (N_SCORERS, v)
        }
        Source::Bow { max_dims } => bow(ds, &all, max_dims)?,
    };
    let values = values.into_iter().map(|x| x as f32).collect();
    FeatureTable::new(dim, keys, values, origin).map_err(|e| TrainError::Other(e.to_string()))
}

/// Mean over components of each component's variance across the rows of `values` (row-major,
/// `dim` columns).
fn mean_variance(values: &[f64], dim: usize) -> f64 {
    let n = (values.len() / dim) as f64;
    let mut total = 0.0;
    for j in 0..dim {
        let col = values.iter().skip(j).step_by(dim);
        let mean = col.clone().sum::<f64>() / n;
        total += col.map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    }
    total / dim as f64
}

/// The dense bag-of-words vectors of the responses of `all` (the data's texts first), fitted on
/// the data's training texts, on the `max_dims` features present in the most training texts
/// (ties to the lower feature index), in vocabulary order.
fn bow(ds: &Dataset, all: &[(String, String)], max_dims: usize) -> Result<(usize, Vec<f64>)> {
    if max_dims == 0 {
        return Err(TrainError::Other("--max-dims must be at least 1".into()));
    }
    let texts = ds.texts();
    let (bow, train_text) = train_bag_of_words(ds, &texts);
    if bow.is_empty() {
        return Err(TrainError::Other(
            "the bag of words has no features: no word or bigram is in enough training texts"
                .into(),
        ));
    }
    let feats: Vec<Vec<(usize, f64)>> = all.iter().map(|(_, r)| bow.features(r)).collect();
    let mut df = vec![0usize; bow.len()];
    for (f, _) in feats.iter().zip(&train_text).filter(|(_, &t)| t) {
        for &(j, _) in f {
            df[j] += 1;
        }
    }
    let mut order: Vec<usize> = (0..bow.len()).collect();
    order.sort_by(|&a, &b| df[b].cmp(&df[a]).then(a.cmp(&b)));
    order.truncate(max_dims);
    order.sort_unstable();
    let mut column = vec![usize::MAX; bow.len()];
    for (c, &j) in order.iter().enumerate() {
        column[j] = c;
    }
    let dim = order.len();
    let mut values = vec![0.0; feats.len() * dim];
    for (i, f) in feats.iter().enumerate() {
        for &(j, v) in f {
            if column[j] != usize::MAX {
                values[i * dim + column[j]] = v;
            }
        }
    }
    Ok((dim, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrf_data::synth::{generate, SynthConfig, Synthetic};

    fn small() -> (Synthetic, Dataset) {
        let s = generate(&SynthConfig {
            seen_users: 4,
            unseen_users: 3,
            train_prompts: 60,
            eval_prompts: 50,
            ..SynthConfig::default()
        })
        .unwrap();
        let ds = Dataset::from_triplets(s.triplets.clone()).unwrap();
        (s, ds)
    }

    #[test]
    fn true_rows_are_the_scorers_of_every_unique_text() {
        let (s, ds) = small();
        let meta = s.meta();
        let t = feature_table(&ds, Some(&meta), Source::True, false, Path::new("t.jsonl")).unwrap();
        let texts = ds.texts();
        assert_eq!(t.len(), texts.texts.len());
        assert_eq!(t.dim(), N_SCORERS);
        for (p, r) in texts.texts.iter().step_by(7) {
            let want: Vec<f32> = meta.stats.score(r).iter().map(|&x| x as f32).collect();
            let key = FeatureKey::Pair {
                prompt: p.clone(),
                response: r.clone(),
            };
            assert_eq!(t.get(&key).unwrap(), &want[..]);
        }
        // Without the side-file there is nothing to read the truth from.
        let e = feature_table(&ds, None, Source::True, false, Path::new("t.jsonl")).unwrap_err();
        assert!(e.to_string().contains("synth_meta"), "{e}");
    }

    #[test]
    fn noise_has_the_asked_snr_and_follows_the_seed() {
        let (s, ds) = small();
        let meta = s.meta();
        let at = |snr: f64, seed: u64| {
            feature_table(
                &ds,
                Some(&meta),
                Source::Noisy { snr, seed },
                false,
                Path::new("n"),
            )
            .unwrap()
        };
        let truth = feature_table(&ds, Some(&meta), Source::True, false, Path::new("t")).unwrap();
        let signal: Vec<f64> = truth.values().iter().map(|&x| f64::from(x)).collect();
        let signal_var = mean_variance(&signal, N_SCORERS);
        let n = at(2.0, 0);
        let noise: Vec<f64> = n
            .values()
            .iter()
            .zip(truth.values())
            .map(|(a, b)| f64::from(a - b))
            .collect();
        let noise_var = noise.iter().map(|x| x * x).sum::<f64>() / noise.len() as f64;
        let snr = signal_var / noise_var;
        assert!((snr - 2.0).abs() < 0.2, "measured SNR {snr}");
        assert_eq!(n.values(), at(2.0, 0).values());
        assert_ne!(n.values(), at(2.0, 1).values());
        for bad in [0.0, -1.0, f64::NAN] {
            let e = feature_table(
                &ds,
                Some(&meta),
                Source::Noisy { snr: bad, seed: 0 },
                false,
                Path::new("n"),
            )
            .unwrap_err();
            assert!(e.to_string().contains("--snr"), "{e}");
        }
    }

    #[test]
    fn bow_keeps_the_most_frequent_features() {
        let (_, ds) = small();
        let texts = ds.texts();
        let (full, train_text) = train_bag_of_words(&ds, &texts);
        assert!(full.len() > 8, "vocabulary of {}", full.len());
        let t = feature_table(
            &ds,
            None,
            Source::Bow { max_dims: 8 },
            false,
            Path::new("b"),
        )
        .unwrap();
        assert_eq!((t.len(), t.dim()), (texts.texts.len(), 8));
        // Each kept column is non-zero in at least as many training texts as any dropped one.
        let nonzero = |col: usize| {
            (0..t.len())
                .filter(|&i| train_text[i] && t.row(i)[col] != 0.0)
                .count()
        };
        let kept_min = (0..8).map(nonzero).min().unwrap();
        let mut df = vec![0usize; full.len()];
        for (i, (_, r)) in texts.texts.iter().enumerate() {
            if train_text[i] {
                for (j, _) in full.features(r) {
                    df[j] += 1;
                }
            }
        }
        df.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(kept_min, df[7]);
        // A large cap keeps the whole vocabulary, and the values are the ranker's features.
        let all = feature_table(
            &ds,
            None,
            Source::Bow { max_dims: 1 << 20 },
            false,
            Path::new("b"),
        )
        .unwrap();
        assert_eq!(all.dim(), full.len());
        let (_, r) = &texts.texts[3];
        let mut dense = vec![0f32; full.len()];
        for (j, v) in full.features(r) {
            dense[j] = v as f32;
        }
        assert_eq!(all.row(3), &dense[..]);
    }

    #[test]
    fn prompt_rows_follow_the_texts_and_leave_them_unchanged() {
        let (s, ds) = small();
        let meta = s.meta();
        let n = ds.texts().texts.len();
        let prompts: std::collections::HashSet<&str> =
            ds.triplets.iter().map(|t| t.prompt.as_str()).collect();
        for source in [
            Source::True,
            Source::Noisy { snr: 1.0, seed: 3 },
            Source::Bow { max_dims: 16 },
        ] {
            let without = feature_table(&ds, Some(&meta), source, false, Path::new("a")).unwrap();
            let with = feature_table(&ds, Some(&meta), source, true, Path::new("b")).unwrap();
            assert_eq!(without.len(), n);
            assert_eq!(with.len(), n + prompts.len(), "{source:?}");
            assert_eq!(
                &with.values()[..n * with.dim()],
                without.values(),
                "{source:?}"
            );
            for p in &prompts {
                let key = FeatureKey::Pair {
                    prompt: p.to_string(),
                    response: String::new(),
                };
                let row = with.get(&key).expect("a row per prompt");
                if source == Source::True {
                    let want: Vec<f32> = meta.stats.score("").iter().map(|&x| x as f32).collect();
                    assert_eq!(row, &want[..]);
                }
                assert!(without.get(&key).is_none());
            }
        }
    }
}
