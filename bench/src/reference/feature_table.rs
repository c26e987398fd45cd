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
    feature_table_with(ds, meta, source, prompts, &[], origin)
}

/// [`feature_table`] with rows for `extra` texts too (after the others, duplicates skipped):
/// e.g. the generator's candidate responses that best-of-N in `compare` scores.
pub fn feature_table_with(
    ds: &Dataset,
    meta: Option<&SynthMeta>,
    source: Source,
    prompts: bool,
    extra: &[(String, String)],
    origin: &Path,
) -> Result<FeatureTable> {
    let (mut all, _) = vrf_trainer::features::table_texts(ds, prompts);
    let mut present: std::collections::HashSet<(String, String)> = all.iter().cloned().collect();
    for t in extra {
        if present.insert(t.clone()) {
            all.push(t.clone());
        }
    }
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

impl std::str::FromStr for Source {
    type Err = String;

    /// `true`, `noisy:SNR` (noise seed 0) or `bow[:MAX_DIMS]` (512 by default).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let number = |a: &str| -> std::result::Result<f64, String> {
            a.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| format!("{s:?}: {a:?} is not a positive number"))
        };
        match (name, arg) {
            ("true", None) => Ok(Source::True),
            ("noisy", Some(a)) => Ok(Source::Noisy {
                snr: number(a)?,
                seed: 0,
            }),
            ("bow", None) => Ok(Source::Bow { max_dims: 512 }),
            ("bow", Some(a)) => match a.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Source::Bow { max_dims: n }),
                _ => Err(format!("{s:?}: {a:?} is not a positive integer")),
            },
            _ => Err(format!(
                "unknown feature source {s:?}: expected true, noisy:SNR or bow[:MAX_DIMS]"
            )),
        }
    }
}

impl Source {
    /// A file-name-safe name (`true`, `noisy-snr0.25`, `bow512`).
    pub fn slug(&self) -> String {
        match self {
            Source::True => "true".into(),
            Source::Noisy { snr, seed: 0 } => format!("noisy-snr{snr}"),
            Source::Noisy { snr, seed } => format!("noisy-snr{snr}-seed{seed}"),
            Source::Bow { max_dims } => format!("bow{max_dims}"),
        }
    }
}

/// The table of `source` for benchmark `data` — its texts, PAL-B's prompt rows and the
/// generator's candidate responses — written once next to it (`DATA.features-SLUG.npy`,
/// deterministic) and reused afterwards.
pub fn ensure_table(data: &Path, source: Source) -> Result<std::path::PathBuf> {
    let stem = data
        .file_stem()
        .map_or_else(|| "data".into(), |s| s.to_string_lossy().to_string());
    let path = data.with_file_name(format!("{stem}.features-{}.npy", source.slug()));
    if !path.exists() {
        let ds = Dataset::load(data)?;
        let meta = super::load_meta(data)?;
        // Every candidate response of the generator, so `compare` can score its best-of-N.
        let candidates: Vec<(String, String)> = match &meta {
            Some(m) => vrf_data::synth::generate(&m.config)?
                .prompts
                .iter()
                .flat_map(|p| p.responses.iter().map(|r| (p.text.clone(), r.clone())))
                .collect(),
            None => vec![],
        };
        let table = feature_table_with(&ds, meta.as_ref(), source, true, &candidates, &path)?;
        table.write(&path)?;
    }
    // Absolute: runs store the path and are resumed from anywhere.
    std::fs::canonicalize(&path).map_err(|e| TrainError::io(&path, e))
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
    fn sources_parse_from_their_names_and_bad_ones_are_named() {
        assert_eq!("true".parse::<Source>(), Ok(Source::True));
        assert_eq!(
            "noisy:0.5".parse::<Source>(),
            Ok(Source::Noisy { snr: 0.5, seed: 0 })
        );
        assert_eq!("bow".parse::<Source>(), Ok(Source::Bow { max_dims: 512 }));
        assert_eq!("bow:64".parse::<Source>(), Ok(Source::Bow { max_dims: 64 }));
        for bad in [
            "noisy",
            "noisy:-1",
            "noisy:nan",
            "bow:0",
            "bow:x",
            "truth",
            "true:1",
        ] {
            let e = bad.parse::<Source>().unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        assert_eq!(Source::Noisy { snr: 0.25, seed: 0 }.slug(), "noisy-snr0.25");
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
