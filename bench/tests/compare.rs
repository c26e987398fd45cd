//! `vrf-bench compare` end to end on a tiny synthetic benchmark (few users and prompts,
//! 1 epoch, 1 seed, 2 αs, every method): fitted in two shards, then analysed with `--resume`;
//! the tables are complete and consistent and the figures are valid SVG and PNG. Also checks
//! that the per-user scorer reproduces each run's own evaluation.

use std::path::Path;

use candle_core::Device;
use vrf_bench::compare::{run, CompareOutcome, ComparePlan, CompareReport};
use vrf_bench::score::{Query, RunScorer};
use vrf_data::synth::SynthConfig;
use vrf_trainer::config::{Method, RunConfig};
use vrf_trainer::eval::EvalReport;

const METHODS: [Method; 6] = [
    Method::Vrf,
    Method::Bt,
    Method::Lore,
    Method::Pref,
    Method::Pal,
    Method::Vpl,
];

/// Seconds-long fits: a tiny backbone on short texts, one epoch, small method settings.
fn base() -> RunConfig {
    let mut c = RunConfig::default();
    c.model.k = 3;
    c.model.d = 4;
    c.train.epochs = 1;
    c.train.max_len = 32;
    c.train.prompts_per_step = 4;
    c.train.checkpoint_every = 0;
    c.train.s1_head_epochs = 1;
    c.train.s2_epochs = 1;
    let b = &mut c.baseline;
    b.lore_k = 3;
    b.pref_j = 3;
    b.pal_k = 2;
    b.pal_dim = 8;
    b.vpl_latent = 4;
    b.vpl_hidden = 16;
    b.adapt_steps = 30;
    b.pref_adapt_steps = 30;
    c
}

fn plan(out: &Path) -> ComparePlan {
    ComparePlan {
        feature_source: None,
        out: out.to_path_buf(),
        methods: METHODS.to_vec(),
        alphas: vec![0.1, 10.0],
        seeds: vec![0],
        base: base(),
        synth: SynthConfig {
            seen_users: 4,
            unseen_users: 6,
            train_prompts: 10,
            eval_prompts: 6,
            ref_per_user: 3,
            target_per_user: 4,
            seen_eval_per_user: 3,
            unseen_eval_per_user: 3,
            ..Default::default()
        },
        resume: false,
        shard: None,
        verbose: false,
        // Fits side by side, so the baselines are exercised off the main thread too.
        jobs: 2,
    }
}

fn in_unit(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

fn check_report(r: &CompareReport) {
    let names: Vec<&str> = METHODS.iter().map(|m| m.name()).collect();
    assert_eq!(r.methods, names);
    for &a in &r.alphas {
        for m in &names {
            let rows: Vec<_> = r
                .accuracy
                .iter()
                .filter(|x| x.method == *m && x.alpha == a)
                .collect();
            assert_eq!(rows.len(), 1, "Table 1 row for {m} at α = {a}");
            for v in [rows[0].seen.0, rows[0].unseen.0, rows[0].overall.0] {
                assert!(in_unit(v), "{m} α = {a}: accuracy {v}");
            }
            let fs = r
                .few_shot
                .iter()
                .find(|x| x.method == *m && x.alpha == a)
                .expect("few-shot row");
            let at = |k: usize| {
                fs.points
                    .iter()
                    .find(|p| p.0 == k)
                    .expect("k of the curve")
                    .1
                     .0
            };
            // Unseen users have 3 reference pairs: k = 1 and 3 exist, 5 and 9 do not.
            assert!(in_unit(at(1)) && in_unit(at(3)), "{fs:?}");
            if *m == "bt" {
                assert!(fs.points.iter().all(|p| p.1 == fs.all), "{fs:?}");
            } else {
                assert!(at(5).is_nan());
                // k = 0 is VRF's population prior (cold start); the baselines have none.
                assert_eq!(in_unit(at(0)), *m == "vrf", "{m}: {fs:?}");
            }
            // Calibration is measured for every method.
            assert!(
                rows[0].ece.0 >= 0.0 && rows[0].ece.0 <= 1.0,
                "{m}: {:?}",
                rows[0].ece
            );
            // ρ(−k, error), the reference σ² is read against, is VRF's only.
            let rho_k = rows[0].rho_answers.0;
            if *m == "vrf" {
                assert!(
                    rho_k.is_nan() || (-1.0..=1.0).contains(&rho_k),
                    "ρ = {rho_k}"
                );
            } else {
                assert!(rho_k.is_nan(), "{m}: ρ(−k) = {rho_k}");
            }
            let u = r
                .uncertainty
                .iter()
                .find(|x| x.method == *m && x.alpha == a)
                .expect("uncertainty row");
            assert_eq!((u.terciles.len(), u.deciles.len()), (3, 10));
            // 6 unseen users: two per tercile, so every tercile has an accuracy.
            assert!(u.terciles.iter().all(|t| in_unit(t.0)), "{u:?}");
            let rho = u.spearman.0;
            assert!(rho.is_nan() || (-1.0..=1.0).contains(&rho), "ρ = {rho}");
            let c = r
                .cost
                .iter()
                .find(|x| x.method == *m && x.alpha == a)
                .expect("cost row");
            assert!(c.train_seconds.0 > 0.0, "{c:?}");
            // BT has no per-user representation to infer.
            assert!(
                c.adapt_seconds_per_user.0 >= 0.0
                    || (*m == "bt" && c.adapt_seconds_per_user.0.is_nan()),
                "{c:?}"
            );
            let b = r
                .best_of_n
                .iter()
                .find(|x| x.method == *m && x.alpha == a)
                .expect("best-of-N row");
            // (4 seen × 3 + 6 unseen × 3) eval prompts.
            assert_eq!(b.queries, 30);
            for v in [b.regret_seen.0, b.regret_unseen.0, b.regret.0] {
                assert!(v >= 0.0 && v.is_finite(), "{m}: regret {v}");
            }
            assert!(in_unit(b.best_rate.0));
            let w = b.win_rate_vs_bt.expect("win rate").0;
            assert!(in_unit(w), "{m}: win rate {w}");
            if *m == "bt" {
                assert_eq!(w, 0.5, "BT against itself ties everywhere");
            }
        }
        // The reference pickers, and the true-global picker beats a random pick on average.
        let refs: Vec<_> = r
            .best_of_n
            .iter()
            .filter(|x| x.alpha == a && x.method.contains("reference"))
            .collect();
        assert_eq!(refs.len(), 2);
        assert!(refs.iter().all(|x| x.regret.0 >= 0.0));
        // The reference rankers of the benchmark.
        assert!(r
            .reference
            .iter()
            .any(|(x, rep)| *x == a && !rep.rankers.is_empty()));
        // The few-shot ceiling on the same draws (3 references: k = 0, 1, 3), and every method's
        // headroom per k computed from its few-shot point against it.
        let (_, rep) = r.reference.iter().find(|(x, _)| *x == a).unwrap();
        let ks: Vec<usize> = rep.ceiling.iter().map(|p| p.k).collect();
        assert_eq!(ks, [0, 1, 3]);
        for m in &names {
            let h = r
                .headroom_per_k
                .iter()
                .find(|x| x.method == *m && x.alpha == a)
                .expect("headroom-per-k row");
            let fs = r
                .few_shot
                .iter()
                .find(|x| x.method == *m && x.alpha == a)
                .unwrap();
            for ((k, hk), (_, acc)) in h.points.iter().zip(&fs.points) {
                // One seed: the headroom of the mean accuracy.
                let want = rep.headroom_at(*k, acc.0).unwrap_or(f64::NAN);
                assert!(
                    hk.0 == want || (hk.0.is_nan() && want.is_nan()),
                    "{m} α = {a} k = {k}: {hk:?} vs {want}"
                );
            }
            assert!(h.points[0].1 .0.is_nan(), "k = 0 has no headroom: {h:?}");
        }
    }
}

fn check_figures(out: &Path, r: &CompareReport) {
    for stem in ["fewshot", "uncertainty", "best_of_n", "training_curves"] {
        for ext in ["svg", "png"] {
            let f = format!("figures/{stem}.{ext}");
            assert!(r.figures.contains(&f), "{f} not in {:?}", r.figures);
        }
    }
    for a in &r.alphas {
        let f = format!("figures/preference_space-alpha-{a}.svg");
        assert!(r.figures.contains(&f), "{f}");
    }
    for f in &r.figures {
        let bytes = std::fs::read(out.join(f)).unwrap();
        assert!(bytes.len() > 200, "{f}: {} bytes", bytes.len());
        if f.ends_with(".svg") {
            let t = String::from_utf8(bytes).unwrap();
            assert!(
                t.contains("<svg") && t.trim_end().ends_with("</svg>"),
                "{f}"
            );
            // Something was drawn: lines or markers.
            assert!(t.contains("<polyline") || t.contains("<circle"), "{f}");
        } else {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{f}");
        }
    }
}

#[test]
fn compare_runs_end_to_end_in_shards_and_writes_consistent_tables_and_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let dev = Device::Cpu;
    // Two shards fit disjoint halves of the jobs and analyse nothing …
    for i in 0..2 {
        let p = ComparePlan {
            shard: Some((i, 2)),
            ..plan(&out)
        };
        assert!(matches!(run(&p, &dev).unwrap(), CompareOutcome::Sharded));
    }
    for a in ["alpha-0.1", "alpha-10"] {
        assert!(out.join(a).join("data.jsonl").exists());
        for m in METHODS {
            let eval = out
                .join(a)
                .join(format!("{}-seed0", m.name()))
                .join("eval.json");
            assert!(eval.exists(), "{}", eval.display());
        }
    }
    assert!(!out.join("compare.md").exists());
    // … and a resumed call reuses every fit and writes the tables and figures.
    let p = ComparePlan {
        resume: true,
        ..plan(&out)
    };
    let CompareOutcome::Done(r) = run(&p, &dev).unwrap() else {
        panic!("not done")
    };
    check_report(&r);
    check_figures(&out, &r);
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    for section in [
        "Table 1",
        "Few-shot",
        "Uncertainty",
        "Cost",
        "Best-of-N",
        "Headroom per k",
        "Figures",
    ] {
        assert!(md.contains(section), "{section} missing:\n{md}");
    }
    assert!(md.contains("| VRF |") && md.contains("| PAL-B |") && md.contains("ref: oracle"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["accuracy"].as_array().unwrap().len(), 12);

    // The scorer's per-user accuracies pool to each run's own unseen accuracy.
    for m in METHODS {
        let dir = out.join("alpha-0.1").join(format!("{}-seed0", m.name()));
        let s = RunScorer::load(&dir, &dev).unwrap();
        let users = s.user_accuracy(&s.dataset().unseen).unwrap();
        let (c, n) = users
            .iter()
            .fold((0, 0), |(c, n), u| (c + u.correct, n + u.pairs));
        let saved: EvalReport =
            serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
        assert_eq!(n, saved.unseen_pairs, "{}", m.name());
        assert!(
            (c as f64 / n as f64 - saved.unseen_accuracy).abs() <= 1.0 / n as f64 + 1e-9,
            "{}: {c}/{n} vs {}",
            m.name(),
            saved.unseen_accuracy
        );
        assert_eq!(s.posteriors().is_some(), m == Method::Vrf);
        // The reward API on free-standing texts ranks each eval pair as the evaluation does.
        let ds = s.dataset();
        let queries: Vec<Query> = ds
            .unseen
            .iter()
            .flat_map(|&u| ds.users[u].evals.iter().map(move |&i| (u, i)))
            .map(|(u, i)| {
                let t = &ds.triplets[i];
                Query {
                    user: u,
                    prompt: t.prompt.clone(),
                    responses: vec![t.rejected.clone(), t.chosen.clone()],
                }
            })
            .collect();
        let rewards = s.rewards(&queries).unwrap();
        // Scored a few queries per batch, the rewards are the same.
        let mut small = RunScorer::load(&dir, &dev).unwrap();
        small.set_query_chunk(4);
        let again = small.rewards(&queries).unwrap();
        for (a, b) in rewards.iter().zip(&again) {
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                    "{}: {a:?} vs {b:?}",
                    m.name()
                );
            }
        }
        assert_eq!(rewards.len(), n);
        let right = rewards.iter().filter(|r| r[1] > r[0]).count();
        assert!(
            right.abs_diff(c) <= 1,
            "{}: rewards rank {right} of {n} pairs right, evaluation {c}",
            m.name()
        );
    }
}

#[test]
fn bad_plans_are_refused_with_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    for (p, want) in [
        (
            ComparePlan {
                alphas: vec![],
                ..plan(tmp.path())
            },
            "at least one α",
        ),
        (
            ComparePlan {
                alphas: vec![1.0, -2.0],
                ..plan(tmp.path())
            },
            "positive",
        ),
        (
            ComparePlan {
                alphas: vec![1.0, 1.0],
                ..plan(tmp.path())
            },
            "twice",
        ),
        (
            ComparePlan {
                methods: vec![],
                ..plan(tmp.path())
            },
            "at least one method",
        ),
    ] {
        let e = run(&p, &dev).unwrap_err();
        assert!(
            matches!(&e, vrf_trainer::error::TrainError::External(b)
                if b.is::<vrf_bench::compare::CompareError>()),
            "{e}"
        );
        assert!(e.to_string().contains(want), "{e}");
    }
}
