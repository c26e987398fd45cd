//! Prints the sanity numbers of the synthetic benchmark (docs/METHOD.md §6): accuracy of global rankers vs
//! the oracle personalised ranker with perfect scorer features, scorer correlations, and text
//! lengths in words and in tokens of a BPE tokenizer trained on the corpus.
//!
//!     cargo run --release -p vrf-bench --example synth_stats [-- SEED]
//!
//! `QW=<f64>` overrides the quality weight of the three α runs.

use vrf_data::synth::{self, SynthConfig, N_SCORERS, SCORER_NAMES};
use vrf_format::math::argmax;
use vrf_trainer::tokenize::{train_bpe, TextEncoder, TextTemplate, DEFAULT_VOCAB_SIZE};

fn pct(v: &[usize], q: f64) -> usize {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let seed: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    for alpha in [0.1, 1.0, 10.0] {
        let qw: f64 = std::env::var("QW")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.3);
        let cfg = SynthConfig {
            alpha,
            seed,
            quality_weight: qw,
            ..SynthConfig::default()
        };
        let s = synth::generate(&cfg)?;
        let r = s.sanity();
        println!(
            "alpha={alpha:<4} eval pairs {}: uniform {:.3}  mean-w {:.3}  fitted-global {:.3}  oracle {:.3}",
            r.eval_pairs, r.uniform, r.mean_weight, r.fitted_global, r.oracle
        );
    }
    let s = synth::generate(&SynthConfig {
        seed,
        ..SynthConfig::default()
    })?;
    // Uniform-ranker accuracy on eval pairs, by each user's dominant scorer.
    let mut by = [(0usize, 0usize); N_SCORERS];
    let dominant: std::collections::BTreeMap<&str, usize> = s
        .user_weights
        .iter()
        .map(|(u, w)| (u.as_str(), argmax(w).unwrap_or(0)))
        .collect();
    for t in s
        .triplets
        .iter()
        .filter(|t| t.split == vrf_data::Split::Eval)
    {
        let (c, r) = (s.stats.score(&t.chosen), s.stats.score(&t.rejected));
        let d: f64 = (0..N_SCORERS).map(|j| c[j] - r[j]).sum();
        let e = &mut by[dominant[t.user.as_str()]];
        e.0 += (d > 0.0) as usize;
        e.1 += 1;
    }
    let cells: Vec<String> = (0..N_SCORERS)
        .map(|j| {
            format!(
                "{} {:.3} (n={})",
                SCORER_NAMES[j],
                by[j].0 as f64 / by[j].1.max(1) as f64,
                by[j].1
            )
        })
        .collect();
    println!(
        "alpha=0.1 uniform accuracy by dominant scorer: {}",
        cells.join(", ")
    );
    // Scorer correlations over all responses.
    let scores: Vec<[f64; N_SCORERS]> = s
        .prompts
        .iter()
        .flat_map(|p| p.scores.iter().copied())
        .collect();
    let n = scores.len() as f64;
    let mean: Vec<f64> = (0..N_SCORERS)
        .map(|j| scores.iter().map(|x| x[j]).sum::<f64>() / n)
        .collect();
    let sd: Vec<f64> = (0..N_SCORERS)
        .map(|j| (scores.iter().map(|x| (x[j] - mean[j]).powi(2)).sum::<f64>() / n).sqrt())
        .collect();
    println!(
        "scorer correlations (normalised scorers, {} responses):",
        scores.len()
    );
    for a in 0..N_SCORERS {
        let row: Vec<String> = (0..N_SCORERS)
            .map(|b| {
                let c = scores
                    .iter()
                    .map(|x| (x[a] - mean[a]) * (x[b] - mean[b]))
                    .sum::<f64>()
                    / n
                    / (sd[a] * sd[b]);
                format!("{c:5.2}")
            })
            .collect();
        println!("  {:>10} {}", SCORER_NAMES[a], row.join(" "));
    }
    // Lengths.
    let words: Vec<usize> = s
        .prompts
        .iter()
        .flat_map(|p| p.responses.iter().map(|r| r.split_whitespace().count()))
        .collect();
    println!(
        "response words: median {} p5 {} p95 {} max {}",
        pct(&words, 0.5),
        pct(&words, 0.05),
        pct(&words, 0.95),
        pct(&words, 1.0)
    );
    let corpus = s
        .prompts
        .iter()
        .flat_map(|p| std::iter::once(p.text.clone()).chain(p.responses.iter().cloned()));
    let t0 = std::time::Instant::now();
    let tok = train_bpe(corpus, DEFAULT_VOCAB_SIZE)?;
    let train_s = t0.elapsed().as_secs_f64();
    let enc = TextEncoder::new(tok, TextTemplate::default(), 4096)?;
    let mut lens: Vec<usize> = Vec::new();
    for p in &s.prompts {
        for r in &p.responses {
            lens.push(enc.encode(&p.text, r)?.len());
        }
    }
    let over = |k: usize| lens.iter().filter(|&&l| l > k).count() as f64 / lens.len() as f64;
    println!(
        "tokens (template + prompt + response, vocab {} trained in {train_s:.1}s): median {} p95 {} max {}; >100: {:.1}%, >128: {:.1}%",
        enc.vocab_size(),
        pct(&lens, 0.5),
        pct(&lens, 0.95),
        pct(&lens, 1.0),
        100.0 * over(100),
        100.0 * over(128)
    );
    println!("\nsample responses:");
    for r in s.prompts[0].responses.iter().take(3) {
        println!("[{}]\n{r}\n", s.prompts[0].text);
    }
    Ok(())
}
