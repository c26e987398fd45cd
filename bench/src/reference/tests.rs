use super::*;
use vrf_data::synth::{generate, SynthConfig, Synthetic};
use vrf_trainer::eval::few_shot_draws;

fn small() -> Synthetic {
    generate(&SynthConfig {
        seen_users: 8,
        unseen_users: 6,
        train_prompts: 120,
        eval_prompts: 60,
        ..SynthConfig::default()
    })
    .unwrap()
}

fn report(s: &Synthetic) -> ReferenceReport {
    let ds = Dataset::from_triplets(s.triplets.clone()).unwrap();
    rankers(&ds, &s.meta()).unwrap()
}

/// A deterministic stream in [−1, 1).
fn lcg(state: &mut u64) -> f64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (*state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

#[test]
fn per_user_fit_recovers_the_sign_pattern() {
    let truth = [[2.0, -1.0, 0.5, -0.7], [-1.5, 0.3, 1.0, 0.8]];
    let mut rows = Rows::new(4);
    let mut groups = vec![vec![]; 2];
    let mut st = 7;
    for (u, w) in truth.iter().enumerate() {
        for _ in 0..300 {
            let mut x: Vec<f64> = (0..4).map(|_| lcg(&mut st)).collect();
            // Orient the pair so that the user prefers its first response.
            if logistic_dot(&x, w) < 0.0 {
                x.iter_mut().for_each(|v| *v = -*v);
            }
            groups[u].push((rows.len(), 1.0));
            rows.push_dense(&x);
        }
    }
    let (_, ws) = per_user(&rows, &groups, Some(5), None);
    for (w, t) in ws.iter().zip(&truth) {
        for (a, b) in w.iter().zip(t) {
            assert_eq!(a.signum(), b.signum(), "fitted {w:?}, true {t:?}");
        }
    }
}

fn logistic_dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The true-feature rows and the population ranker, rebuilt as `rankers` builds them.
fn truth_and_population(ds: &Dataset, meta: &SynthMeta) -> (Rows, Vec<f64>) {
    let truth = true_rows(ds, meta);
    let train: Vec<(usize, f64)> = (0..ds.triplets.len())
        .filter(|&i| ds.triplets[i].split != Split::Eval)
        .map(|i| (i, 1.0))
        .collect();
    let (_, pop) = global(ds, &truth, &train, &GRID);
    (truth, pop)
}

#[test]
fn huge_prior_precision_gives_the_population_ranker() {
    let s = small();
    let ds = Dataset::from_triplets(s.triplets.clone()).unwrap();
    let meta = s.meta();
    let r = rankers(&ds, &meta).unwrap();
    let (truth, pop) = truth_and_population(&ds, &meta);
    let pen = Penalty {
        strength: 1e12,
        centre: Some(&pop),
    };
    let acc = evaluate(&ds, &truth, &|u| {
        let refs: Vec<(usize, f64)> = ds.users[u].refs.iter().map(|&i| (i, 1.0)).collect();
        Some(fit(&truth, &refs, pen, Some(&pop)))
    });
    let g = r.get(TRUE_GLOBAL).unwrap();
    assert_eq!(acc, [g.seen, g.unseen]);
}

#[test]
fn eval_labels_never_reach_the_chosen_strengths() {
    let s = small();
    let a = report(&s);
    let mut flipped = s.clone();
    for t in &mut flipped.triplets {
        if t.split == Split::Eval {
            std::mem::swap(&mut t.chosen, &mut t.rejected);
        }
    }
    let b = report(&flipped);
    for (x, y) in a.rankers.iter().zip(&b.rankers) {
        assert_eq!(x.selection, y.selection, "{}", x.id);
    }
    assert_eq!(a.ceiling.len(), b.ceiling.len());
    for (x, y) in a.ceiling.iter().zip(&b.ceiling) {
        assert_eq!(x.selection, y.selection, "ceiling at k = {}", x.k);
    }
    // The eval rows did change: accuracies flip (ties aside).
    let (x, y) = (a.get(TRUE_GLOBAL).unwrap(), b.get(TRUE_GLOBAL).unwrap());
    assert!(x.seen.unwrap() + y.seen.unwrap() <= 1.0 + 1e-12);
}

#[test]
fn benchmark_rankers_are_ordered_sanely() {
    let r = report(&small());
    let acc = |id: &str| r.get(id).unwrap();
    let global = acc(TRUE_GLOBAL);
    let all = acc("true-map-all");
    assert!(all.seen.unwrap() >= global.seen.unwrap(), "{}", r.table());
    assert_eq!(acc("oracle").seen, Some(1.0));
    assert_eq!(acc("oracle").unseen, Some(1.0));
    for x in &r.rankers {
        for v in [x.seen, x.unseen, x.overall] {
            let v = v.unwrap();
            assert!((0.0..=1.0).contains(&v), "{}: {v}", x.id);
        }
    }
    // Headroom is 0 at the floor and 1 at the ceiling.
    let hi = acc(TRUE_MAP_REF);
    let h = r.headroom(global.seen.unwrap(), hi.unseen.unwrap());
    assert!(h.seen.unwrap().abs() < 1e-12 && (h.unseen.unwrap() - 1.0).abs() < 1e-12);
    assert!(r.table().contains("oracle"));
}

#[test]
fn ceiling_at_nine_is_true_map_ref_with_its_strength() {
    let s = small();
    let ds = Dataset::from_triplets(s.triplets.clone()).unwrap();
    let meta = s.meta();
    let r = rankers(&ds, &meta).unwrap();
    let (truth, pop) = truth_and_population(&ds, &meta);
    let map_ref = r.get(TRUE_MAP_REF).unwrap();
    let strength = map_ref.selection.as_ref().unwrap().strength;
    let last = few_shot_draws(&ds).pop().unwrap();
    assert_eq!(last.k, 9);
    // All of a user's references: one draw stands for every draw.
    assert_eq!(last.draws.len(), 1);
    let nine = &last.draws[0];
    // Every unseen user has 9 references: k = 9 is all of them, in another order.
    let unseen = ceiling::on_draws(&ds, &truth, &pop, nine, strength).unwrap();
    assert!(
        (unseen - map_ref.unseen.unwrap()).abs() < 1e-12,
        "{unseen} vs {map_ref:?}"
    );
    // And the curve's k = 0 is the global ranker.
    assert_eq!(r.ceiling_at(0), r.get(TRUE_GLOBAL).unwrap().unseen);
    assert_eq!(
        r.ceiling.iter().map(|p| p.k).collect::<Vec<_>>(),
        [0, 1, 3, 5, 9]
    );
}

#[test]
fn ceiling_is_computed_on_the_few_shot_draws() {
    let s = small();
    let ds = Dataset::from_triplets(s.triplets.clone()).unwrap();
    let meta = s.meta();
    let r = rankers(&ds, &meta).unwrap();
    let (truth, pop) = truth_and_population(&ds, &meta);
    let mut differs = false;
    for point in few_shot_draws(&ds) {
        let k = point.k;
        let p = r.ceiling.iter().find(|p| p.k == k).unwrap();
        let strength = p.selection.as_ref().unwrap().strength;
        // The point is the mean over its draws.
        let each: Vec<f64> = point
            .draws
            .iter()
            .map(|d| ceiling::on_draws(&ds, &truth, &pop, d, strength).unwrap())
            .collect();
        let mean = each.iter().sum::<f64>() / each.len() as f64;
        assert!((p.unseen.unwrap() - mean).abs() < 1e-12, "k = {k}");
        // Other draws of the same size: each user's last k references instead.
        let other: Vec<Vec<usize>> = ds
            .unseen
            .iter()
            .map(|&u| {
                let refs = &ds.users[u].refs;
                refs[refs.len().saturating_sub(k)..].to_vec()
            })
            .collect();
        differs |= p.unseen != ceiling::on_draws(&ds, &truth, &pop, &other, strength);
    }
    // The check above can tell the draws apart: other subsets give other accuracies.
    assert!(differs, "{}", r.ceiling_table());
}

#[test]
fn headroom_per_k_is_zero_at_the_global_ranker_and_one_at_the_ceiling() {
    let r = report(&small());
    let lo = r.ceiling_at(0).unwrap();
    // k = 0: the ceiling is the floor, so the headroom is undefined.
    assert_eq!(r.headroom_at(0, 0.9), None);
    assert_eq!(r.headroom_at(7, 0.9), None);
    let mut defined = 0;
    for p in &r.ceiling[1..] {
        let hi = p.unseen.unwrap();
        assert!((0.0..=1.0).contains(&hi), "k = {}: {hi}", p.k);
        match r.headroom_at(p.k, hi) {
            Some(h) => {
                defined += 1;
                assert!((h - 1.0).abs() < 1e-12, "k = {}: {h}", p.k);
                assert!(r.headroom_at(p.k, lo).unwrap().abs() < 1e-12);
                assert_eq!(r.headroom_at(p.k, f64::NAN), None);
            }
            None => assert!((hi - lo).abs() <= 1e-9 || hi < lo, "k = {}", p.k),
        }
    }
    assert!(defined > 0, "{}", r.ceiling_table());
    assert!(r.ceiling_table().contains("| k | 0 | 1 | 3 | 5 | 9 |"));
}

#[test]
fn missing_true_weights_are_an_error() {
    let s = small();
    let ds = Dataset::from_triplets(s.triplets.clone()).unwrap();
    let mut meta = s.meta();
    meta.user_weights.pop();
    assert!(rankers(&ds, &meta).is_err());
}

/// The default benchmark's reference table (`VRF_REF_ALPHA`, `VRF_REF_SEED` override α and the
/// data seed); slow, so run by hand: `cargo test -p vrf-bench --lib measure -- --ignored`.
#[test]
#[ignore]
fn measure_default_benchmark() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    let cfg = SynthConfig {
        alpha: env("VRF_REF_ALPHA").unwrap_or(0.1),
        seed: env("VRF_REF_SEED").unwrap_or(0.0) as u64,
        ..SynthConfig::default()
    };
    let t = std::time::Instant::now();
    let r = report(&generate(&cfg).unwrap());
    println!(
        "α = {}, seed {}: {} BoW features, {:.1} s\n{}",
        cfg.alpha,
        cfg.seed,
        r.bow_features,
        t.elapsed().as_secs_f64(),
        r.table()
    );
}
