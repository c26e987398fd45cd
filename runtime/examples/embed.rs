//! Embedding the runtime in an application: load an exported model once, personalise for a new
//! user from three of their preferences, and pick the best of several candidate responses.
//!
//! ```text
//! cargo run --release -p vrf-runtime --example embed -- MODEL_DIR
//! ```

use std::sync::Arc;

use vrf_runtime::{Reference, RuntimeOptions, VrfModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: embed MODEL_DIR (a directory written by `vrf-trainer export`)")?;

    // One model per process; `VrfModel` is Send + Sync, so request handlers can share an Arc.
    let model = Arc::new(VrfModel::load(
        &dir,
        &RuntimeOptions::new().with_threads(1),
    )?);

    // A new user, described by a few of their preferences: one forward pass gives a posterior.
    let refs = [
        Reference::new(
            "How do I start running?",
            "Start with 10 minutes, three times a week.",
            "Just run.",
        ),
        Reference::new(
            "Explain compound interest.",
            "Interest earns interest: 100 at 5% is 105, then 110.25.",
            "It is about money.",
        ),
        Reference::new(
            "Tips for a job interview?",
            "Research the company and prepare two stories.",
            "Be yourself.",
        ),
    ];
    let user = model.posterior(&refs)?;
    println!(
        "weights over {} bases: {:.3}",
        user.weights.len(),
        user.weights
    );
    println!(
        "uncertainty (mean posterior variance): {:.4}",
        user.uncertainty
    );

    // Best-of-N under this user's weights.
    let prompt = "How can I sleep better?";
    let candidates = [
        "Keep a fixed wake-up time, avoid screens an hour before bed, and keep the room cool.",
        "Sleep is important.",
        "Try counting sheep!",
    ];
    let scored = model.score(&user, prompt, &candidates)?;
    for (c, s) in candidates.iter().zip(scored.scores.iter()) {
        println!("{s:>8.3}  {c}");
    }
    println!("best: {:?}", candidates[scored.best()]);
    let p = model.preference_probability(&user, prompt, candidates[0], candidates[1])?;
    println!("P(first ≻ second) = {p:.3}");

    // The same user, updated one observation at a time (e.g. as feedback arrives).
    let mut state = model.new_state();
    for r in &refs {
        model.observe(&mut state, std::slice::from_ref(r))?;
        println!(
            "after {} preference(s): uncertainty {:.4}",
            state.count,
            model.posterior_of(&state)?.uncertainty
        );
    }
    Ok(())
}
