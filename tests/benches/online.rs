//! Online personalisation on an exported model (prints figures; not a timed test), through the
//! runtime's per-user math on features the ONNX backbone computed once:
//!
//! - **Active questions.** Each unseen user's reference pairs are the pool of questions. Asked
//!   in the order of the largest expected information gain (each answer observed before the
//!   next choice) or in random order (mean over 20 orders), k = 0…|pool|; the figure is
//!   accuracy on the user's eval pairs after k answers (k = 0: the population prior).
//! - **Drift.** A user whose taste switches: unseen user A's references, then user B's (the
//!   next unseen user), j = 0…|pool| of them; accuracy on B's eval pairs without forgetting,
//!   with half-lives of 2, 4 and 8 observations, and for B alone. Also what forgetting costs
//!   when nothing drifts (A's accuracy after A's references).
//!
//! ```text
//! cargo bench -p vrf-tests --bench online                               # a tiny model fitted here
//! cargo bench -p vrf-tests --bench online -- --model DIR --data FILE    # an exported model
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use common::arg;
use ndarray::{s, Array1, Array2, Axis};
use vrf_data::{Dataset, Split};
use vrf_format::math::best_question;
use vrf_runtime::{Features, Reference, RuntimeOptions, UserModel, UserState, VrfModel};
use vrf_trainer::export::{export, ExportOptions};

/// One unseen user's pairs, through the backbone once: references as questions, eval pairs as
/// the test.
struct User {
    /// Backbone outputs of the references, chosen then rejected per pair (`Reference::texts`).
    refs: Features,
    /// Pair features of (chosen, rejected), the user's answer, `[R, F]`.
    ab: Array2<f32>,
    /// Backbone outputs of the eval pairs, chosen then rejected per pair.
    evals: Features,
}

/// Backbone outputs of a user's triplets `idx`, chosen then rejected per pair.
fn features(model: &VrfModel, ds: &Dataset, idx: &[usize]) -> anyhow::Result<Features> {
    let refs: Vec<Reference> = idx
        .iter()
        .map(|&i| {
            let t = &ds.triplets[i];
            Reference::new(t.prompt.clone(), t.chosen.clone(), t.rejected.clone())
        })
        .collect();
    let texts: Vec<(&str, &str)> = refs.iter().flat_map(Reference::texts).collect();
    Ok(model.features(&texts)?)
}

/// The questions `pairs` of `f` (pair i: rows 2i and 2i + 1).
fn pairs_of(f: &Features, pairs: &[usize]) -> Features {
    let rows: Vec<usize> = pairs.iter().flat_map(|&i| [2 * i, 2 * i + 1]).collect();
    Features {
        hidden: f.hidden.select(Axis(0), &rows),
        rewards: f.rewards.select(Axis(0), &rows),
        truncated: Vec::new(),
    }
}

/// Accuracy of a state's posterior on eval pairs, chosen scored above rejected (the population
/// before any answer).
fn accuracy(um: &UserModel, state: &UserState, evals: &Features) -> anyhow::Result<f64> {
    let user = if state.count == 0 {
        um.posterior_from_latent(&um.bases().population()?)?
    } else {
        um.posterior_of(state)?
    };
    let scores = um.score(&user, evals.rewards.view())?;
    let pairs = scores.len() / 2;
    let right = (0..pairs)
        .filter(|&i| scores[2 * i] > scores[2 * i + 1])
        .count();
    Ok(right as f64 / pairs as f64)
}

/// Observes B's references one at a time (forgetting with `decay`), appending the accuracy on
/// B's eval pairs before the first and after each to `cells[0]`, `cells[1]`, ….
fn follow(
    um: &UserModel,
    state: &mut UserState,
    b: &User,
    decay: f32,
    cells: &mut [Vec<f64>],
) -> anyhow::Result<()> {
    cells[0].push(accuracy(um, state, &b.evals)?);
    for (j, cell) in cells.iter_mut().enumerate().skip(1) {
        um.observe_forgetting(state, b.ab.slice(s![j - 1..j, ..]), decay)?;
        cell.push(accuracy(um, state, &b.evals)?);
    }
    Ok(())
}

/// A small deterministic generator for the random orders (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn shuffle(&mut self, v: &mut [usize]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Mean and standard error of per-user values.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, (var / n).sqrt())
}

fn main() -> anyhow::Result<()> {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let args: Vec<String> = std::env::args().collect();
    let tmp = tempfile::tempdir()?;
    let (model_dir, data) = match (arg(&args, "--model"), arg(&args, "--data")) {
        (Some(m), Some(d)) => (PathBuf::from(m), PathBuf::from(d)),
        (None, None) => {
            eprintln!("no --model/--data given: fitting a small model on a small benchmark");
            let data = common::small_benchmark(tmp.path())?;
            let run = common::fit_small(tmp.path(), &data, &common::short_fit())?;
            let dir = tmp.path().join("model");
            export(&run, &dir, &ExportOptions::default())?;
            (dir, data)
        }
        _ => anyhow::bail!("give both --model DIR and --data FILE, or neither"),
    };
    let model = VrfModel::load(&model_dir, &RuntimeOptions::new().with_threads(2))?;
    let um = model.user_model();
    let ds = Dataset::load(&data)?;
    let mut users = Vec::new();
    for &u in &ds.unseen {
        let ud = &ds.users[u];
        let (refs, evals) = (ud.split(Split::Ref), ud.split(Split::Eval));
        if refs.is_empty() || evals.is_empty() {
            continue;
        }
        let refs = features(&model, &ds, refs)?;
        users.push(User {
            ab: model.pair_features_of(&refs)?.features,
            refs,
            evals: features(&model, &ds, evals)?,
        });
    }
    anyhow::ensure!(
        users.len() >= 2,
        "{}: fewer than 2 unseen users with ref and eval rows",
        data.display()
    );
    let pool = users.iter().map(|u| u.ab.nrows()).min().unwrap_or(0);
    println!(
        "machine: {} logical CPUs; model {} (K = {}, d = {}, pooling {}); data {}: {} unseen users, {pool}+ questions each",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        model_dir.display(),
        um.k(),
        um.d(),
        um.pooling().as_str(),
        data.display(),
        users.len()
    );

    // Active vs random questions.
    let orders = 20;
    let mut active = vec![Vec::new(); pool + 1];
    let mut random = vec![Vec::new(); pool + 1];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for u in &users {
        let mut state = um.new_state();
        let mut left: Vec<usize> = (0..pool).collect();
        active[0].push(accuracy(um, &state, &u.evals)?);
        for acc in active.iter_mut().skip(1) {
            let values = model.question_values_of(&state, &pairs_of(&u.refs, &left))?;
            let pick = left.remove(best_question(&values).unwrap_or(0));
            um.observe(&mut state, u.ab.select(Axis(0), &[pick]).view())?;
            acc.push(accuracy(um, &state, &u.evals)?);
        }
        let mut sums = Array1::<f64>::zeros(pool + 1);
        for _ in 0..orders {
            let mut order: Vec<usize> = (0..pool).collect();
            rng.shuffle(&mut order);
            let mut state = um.new_state();
            sums[0] += accuracy(um, &state, &u.evals)?;
            for (k, &q) in order.iter().enumerate() {
                um.observe(&mut state, u.ab.select(Axis(0), &[q]).view())?;
                sums[k + 1] += accuracy(um, &state, &u.evals)?;
            }
        }
        for (k, s) in sums.iter().enumerate() {
            random[k].push(s / orders as f64);
        }
    }
    println!("\nactive vs random questions: unseen-user eval accuracy after k answers (mean ± s.e. over users)");
    println!(
        "{:>3} {:>16} {:>16} {:>22}",
        "k", "active", "random", "active − random"
    );
    for k in 0..=pool {
        let (a, ase) = mean_se(&active[k]);
        let (r, rse) = mean_se(&random[k]);
        let diff: Vec<f64> = active[k]
            .iter()
            .zip(&random[k])
            .map(|(a, r)| a - r)
            .collect();
        let (d, dse) = mean_se(&diff);
        println!(
            "{k:>3} {:>9.1}% ± {:>3.1} {:>9.1}% ± {:>3.1} {:>+14.1} pt ± {:>3.1}",
            100.0 * a,
            100.0 * ase,
            100.0 * r,
            100.0 * rse,
            100.0 * d,
            100.0 * dse
        );
    }

    // Drift: A's references, then B's.
    if um.pooling() != vrf_runtime::Pooling::Pog {
        println!("\ndrift: skipped, forgetting needs PoG pooling");
        return Ok(());
    }
    let half_lives: [Option<f32>; 4] = [None, Some(2.0), Some(4.0), Some(8.0)];
    let decay = |h: Option<f32>| h.map_or(1.0, |h| 0.5f32.powf(1.0 / h));
    // [condition][j] per-pair accuracies; the last condition is B alone.
    let mut drift = vec![vec![Vec::new(); pool + 1]; half_lives.len() + 1];
    let mut stable = vec![Vec::new(); half_lives.len()];
    for (i, a) in users.iter().enumerate() {
        let b = &users[(i + 1) % users.len()];
        for (c, h) in half_lives.iter().enumerate() {
            let mut state = um.new_state();
            um.observe_forgetting(&mut state, a.ab.slice(s![..pool, ..]), decay(*h))?;
            stable[c].push(accuracy(um, &state, &a.evals)?);
            follow(um, &mut state, b, decay(*h), &mut drift[c])?;
        }
        follow(
            um,
            &mut um.new_state(),
            b,
            1.0,
            &mut drift[half_lives.len()],
        )?;
    }
    let names: Vec<String> = half_lives
        .iter()
        .map(|h| h.map_or("no forgetting".to_string(), |h| format!("half-life {h}")))
        .chain(["B alone".to_string()])
        .collect();
    println!("\ndrift: {pool} references of user A, then j of user B; accuracy on B's eval pairs (mean over {} A→B pairs)", users.len());
    print!("{:>3}", "j");
    for n in &names {
        print!(" {n:>14}");
    }
    println!();
    for j in 0..=pool {
        print!("{j:>3}");
        for cond in &drift {
            print!(" {:>13.1}%", 100.0 * mean_se(&cond[j]).0);
        }
        println!();
    }
    print!("no drift: A's accuracy after A's {pool} references:");
    for (n, s) in names.iter().zip(&stable) {
        print!("  {n} {:.1}%", 100.0 * mean_se(s).0);
    }
    println!();
    Ok(())
}
