//! Writes a model fitted on external feature vectors (`vrf_format::fixture::
//! write_features_model_dir`: H = 6, d = 3, K = 4, a population prior, seen users `user-0`,
//! `user-1`) and `parity.json` beside it: random reference pairs, candidates and questions of
//! vectors with this runtime's outputs on them. The Python package's tests
//! (`python/tests/test_features.py`, via `scripts/test-python.sh`) check their numbers against it.
//!
//! `cargo run -p vrf-runtime --example features_fixture -- OUT_DIR`

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use vrf_format::fixture::{write_features_model_dir, Dims, Rng};
use vrf_runtime::{RuntimeOptions, UserPosterior, VectorQuestion, VectorReference, VrfModel};

fn posterior(p: &UserPosterior) -> Value {
    json!({
        "mean": p.mean.to_vec(),
        "var": p.var.to_vec(),
        "weights": p.weights.to_vec(),
        "uncertainty": p.uncertainty,
    })
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        bail!("usage: features_fixture OUT_DIR");
    };
    let dir = std::path::Path::new(&out);
    let dims = Dims {
        hidden: 6,
        enc_hidden: 5,
        d: 3,
        k: 4,
    };
    write_features_model_dir(dir, dims, true, 2, 17)
        .with_context(|| format!("writing {}", dir.display()))?;
    // A features model needs no ONNX Runtime library.
    let model = VrfModel::load(dir, &RuntimeOptions::new().with_threads(1))?;

    let mut rng = Rng::new(29);
    let mut vec = || rng.normal_vec(dims.hidden, 1.0);
    let refs: Vec<VectorReference> = (0..3).map(|_| VectorReference::new(vec(), vec())).collect();
    let candidates: Vec<Vec<f32>> = (0..4).map(|_| vec()).collect();
    let questions: Vec<VectorQuestion> =
        (0..3).map(|_| VectorQuestion::new(vec(), vec())).collect();

    let user = model.posterior_vectors(&refs)?;
    let scores = model.score_vectors(&user, &candidates)?;
    let seen = model.seen_posterior("user-0")?;
    let seen_scores = model.score_vectors(&seen, &candidates)?;
    let p_ab = model.preference_probability_vectors(&user, &candidates[0], &candidates[1])?;
    let fresh = model.new_state();
    let fresh_values = model.question_values_vectors(&fresh, &questions)?;
    let mut state = model.new_state();
    model.observe_vectors(&mut state, &refs[..1])?;
    model.observe_vectors(&mut state, &refs[1..])?;
    let values = model.question_values_vectors(&state, &questions)?;
    let mut forgetful = model.new_state();
    model.observe_forgetting_vectors(&mut forgetful, &refs, 0.5)?;
    let features = model.features_of_vectors(&candidates)?;
    let qv = |v: &[vrf_runtime::QuestionValue]| -> Value {
        v.iter()
            .map(|q| {
                json!({"p_first": q.p_first, "information_gain": q.information_gain,
                       "expected_uncertainty": q.expected_uncertainty})
            })
            .collect()
    };
    let parity = json!({
        "references": refs,
        "candidates": candidates,
        "questions": questions,
        "user": posterior(&user),
        "scores": scores.scores.to_vec(),
        "ranking": scores.ranking(),
        "seen_scores": seen_scores.scores.to_vec(),
        "preference_probability": p_ab,
        "fresh_question_values": qv(&fresh_values),
        "question_values": qv(&values),
        "state_posterior": posterior(&model.posterior_of(&state)?),
        "forgetful_posterior": posterior(&model.posterior_of(&forgetful)?),
        "rewards": features.rewards.rows().into_iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
    });
    vrf_format::fsutil::write_atomic(
        dir.join("parity.json"),
        serde_json::to_string(&parity)?.as_bytes(),
    )?;
    println!("wrote {}", dir.display());
    Ok(())
}
