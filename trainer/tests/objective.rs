//! Checks of the candle objective against closed forms and finite differences (docs/METHOD.md §3, §8).

use std::f64::consts::PI;

use candle_core::{Device, Result, Tensor, Var, D};
use vrf_trainer::bases::Bases;
use vrf_trainer::config::{ModelConfig, Objective, Pooling, Prior};
use vrf_trainer::encoder::{assignment, pool};
use vrf_trainer::loss;
use vrf_trainer::vars::SeededVarMap;

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// L_VA as a function of w and Δ through the candle code path, for one pair.
fn l_va(w: &[f32], delta: &[f32], obj: Objective) -> Result<f64> {
    let dev = Device::Cpu;
    let k = w.len();
    let w = Tensor::from_vec(w.to_vec(), (1, k), &dev)?;
    let d = Tensor::from_vec(delta.to_vec(), (1, k), &dev)?;
    Ok(scalar(&loss::pair_loss(&w, &d, obj)?.sum_all()?))
}

#[test]
fn va_loss_gradient_matches_finite_differences() -> Result<()> {
    let dev = Device::Cpu;
    let cases: [(&[f32], &[f32]); 4] = [
        (&[0.2, 0.5, 0.3], &[1.5, -2.0, 0.7]),
        (&[0.6, 0.1, 0.3], &[-0.4, 3.0, -1.0]),
        (&[0.34, 0.33, 0.33], &[4.0, -4.0, 0.1]),
        (&[0.9, 0.05, 0.05], &[-2.5, 0.5, 0.5]),
    ];
    for (w0, d0) in cases {
        let k = w0.len();
        let dvar = Var::new(d0, &dev)?;
        let wt = Tensor::from_vec(w0.to_vec(), (1, k), &dev)?;
        let l = loss::pair_loss(&wt, &dvar.as_tensor().unsqueeze(0)?, Objective::Va)?.sum_all()?;
        let g = l.backward()?;
        let grad = g
            .get(dvar.as_tensor())
            .expect("gradient")
            .to_vec1::<f32>()?;
        for j in 0..k {
            let h = 1e-3f32;
            let (mut a, mut b) = (d0.to_vec(), d0.to_vec());
            a[j] += h;
            b[j] -= h;
            let fd =
                (l_va(w0, &a, Objective::Va)? - l_va(w0, &b, Objective::Va)?) / (2.0 * h as f64);
            assert!(
                (fd - grad[j] as f64).abs() < 2e-3,
                "∂L/∂Δ_{j}: autograd {} vs finite difference {fd}",
                grad[j]
            );
        }
    }
    Ok(())
}

#[test]
fn va_loss_closed_form_derivatives_and_attenuation() -> Result<()> {
    // docs/METHOD.md §8: ∂L/∂μ_Δ = −(1−σ(z))κ, ∂L/∂σ_Δ² = (1−σ(z))·μ_Δ·(π/16)·κ³, both → 0 as σ_Δ² → ∞.
    let dev = Device::Cpu;
    for (mu0, var0) in [(1.3f32, 0.5f32), (-0.7, 2.0), (2.0, 50.0), (-2.0, 1e4)] {
        let mu = Var::new(&[mu0], &dev)?;
        let var = Var::new(&[var0], &dev)?;
        let z = loss::attenuated_logit(mu.as_tensor(), var.as_tensor())?;
        let l = loss::softplus(&z.neg()?)?.sum_all()?;
        let g = l.backward()?;
        let gm = g.get(mu.as_tensor()).unwrap().to_vec1::<f32>()?[0] as f64;
        let gv = g.get(var.as_tensor()).unwrap().to_vec1::<f32>()?[0] as f64;
        let kappa = (1.0 + PI * var0 as f64 / 8.0).powf(-0.5);
        let zz = mu0 as f64 * kappa;
        let sig = 1.0 / (1.0 + (-zz).exp());
        assert!((gm - (-(1.0 - sig) * kappa)).abs() < 1e-5, "{gm}");
        assert!(
            (gv - (1.0 - sig) * mu0 as f64 * PI / 16.0 * kappa.powi(3)).abs() < 1e-5,
            "{gv}"
        );
        if var0 > 1e3 {
            assert!(gm.abs() < 0.02 && gv.abs() < 1e-5);
        }
    }
    Ok(())
}

#[test]
fn moments_match_definition_and_vanish_at_vertices() -> Result<()> {
    let delta = [1.0f32, -2.0, 0.5];
    for (w, want_mu) in [
        ([0.2f32, 0.5, 0.3], 0.2 - 1.0 + 0.15),
        ([0.0, 1.0, 0.0], -2.0),
    ] {
        let dev = Device::Cpu;
        let wt = Tensor::from_vec(w.to_vec(), (1, 3), &dev)?;
        let dt = Tensor::from_vec(delta.to_vec(), (1, 3), &dev)?;
        let (mu, var) = loss::moments(&wt, &dt)?;
        let mu = mu.to_vec1::<f32>()?[0] as f64;
        let var = var.to_vec1::<f32>()?[0] as f64;
        let want_var: f64 = w
            .iter()
            .zip(delta)
            .map(|(a, b)| *a as f64 * (b as f64 - want_mu).powi(2))
            .sum();
        assert!((mu - want_mu).abs() < 1e-6 && (var - want_var).abs() < 1e-5);
        if w.contains(&1.0) {
            assert!(var.abs() < 1e-7, "σ_Δ² must vanish at a vertex");
            // At a vertex VA equals plain BT.
            assert!(
                (l_va(&w, &delta, Objective::Va)? - l_va(&w, &delta, Objective::Bt)?).abs() < 1e-6
            );
        }
    }
    Ok(())
}

fn bases(k: usize, d: usize, seed: u64) -> Result<Bases> {
    let cfg = ModelConfig {
        k,
        d,
        ..Default::default()
    };
    let v = SeededVarMap::new(seed);
    Bases::new(&cfg, v.builder(&Device::Cpu).pp("bases"))
}

#[test]
fn monte_carlo_kl_with_one_basis_converges_to_closed_form() -> Result<()> {
    // K = 1: the MoG prior is one Gaussian, so KL(q‖p) has a closed form.
    let dev = Device::Cpu;
    let d = 4;
    let b = bases(1, d, 5)?;
    let mu = Tensor::new(&[[0.3f32, -1.0, 0.5, 2.0]], &dev)?;
    let var = Tensor::new(&[[0.5f32, 1.5, 0.2, 1.0]], &dev)?;
    let m = b.means.to_vec2::<f32>()?[0].clone();
    let s2: Vec<f32> = b.log_var.exp()?.to_vec2::<f32>()?[0].clone();
    let (mv, vv) = (
        mu.to_vec2::<f32>()?[0].clone(),
        var.to_vec2::<f32>()?[0].clone(),
    );
    let closed: f64 = (0..d)
        .map(|j| {
            let (q, p) = (vv[j] as f64, s2[j] as f64);
            0.5 * ((p / q).ln() + (q + (mv[j] as f64 - m[j] as f64).powi(2)) / p - 1.0)
        })
        .sum();
    let s = 200_000;
    let eps = Tensor::randn(0f32, 1.0, (s, 1, d), &dev)?;
    let mc = scalar(&b.kl(&mu, &var, &eps, Prior::Mog)?.sum_all()?);
    assert!(
        (mc - closed).abs() < 0.03 * closed.abs().max(1.0),
        "MC {mc} vs closed form {closed}"
    );
    // The N(0, I) prior (ablation d) has its own closed form.
    let std_closed: f64 = (0..d)
        .map(|j| 0.5 * (-(vv[j] as f64).ln() + vv[j] as f64 + (mv[j] as f64).powi(2) - 1.0))
        .sum();
    let mc = scalar(&b.kl(&mu, &var, &eps, Prior::StdNormal)?.sum_all()?);
    assert!(
        (mc - std_closed).abs() < 0.03 * std_closed.abs().max(1.0),
        "MC {mc} vs {std_closed}"
    );
    Ok(())
}

#[test]
fn kl_gradients_reach_the_bases() -> Result<()> {
    let dev = Device::Cpu;
    let cfg = ModelConfig {
        k: 3,
        d: 2,
        ..Default::default()
    };
    let v = SeededVarMap::new(1);
    let b = Bases::new(&cfg, v.builder(&dev).pp("bases"))?;
    let mu = Tensor::new(&[[0.1f32, 0.2]], &dev)?;
    let var = Tensor::new(&[[0.5f32, 0.5]], &dev)?;
    let eps = Tensor::randn(0f32, 1.0, (4, 1, 2), &dev)?;
    let g = b.kl(&mu, &var, &eps, Prior::Mog)?.sum_all()?.backward()?;
    for (name, var) in v.all_named() {
        let gr = g
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert!(
            scalar(&gr.abs()?.sum_all()?) > 0.0,
            "zero gradient for {name}"
        );
    }
    Ok(())
}

#[test]
fn w2_and_weights_match_definitions() -> Result<()> {
    let dev = Device::Cpu;
    let b = bases(3, 2, 9)?;
    let m = b.means.to_vec2::<f32>()?;
    // A posterior identical to basis 1 has W₂² = 0 to it.
    let mu = Tensor::new(m[1].as_slice(), &dev)?.unsqueeze(0)?;
    let var = Tensor::ones((1, 2), candle_core::DType::F32, &dev)?;
    let w2 = b.w2_sq(&mu, &var)?.to_vec2::<f32>()?[0].clone();
    assert!(w2[1].abs() < 1e-6);
    let want0: f32 = (0..2).map(|j| (m[1][j] - m[0][j]).powi(2)).sum();
    assert!((w2[0] - want0).abs() < 1e-5);
    let w = b.weights(&mu, &var)?.to_vec2::<f32>()?[0].clone();
    let z: f32 = w2.iter().map(|x| (-x / 2.0).exp()).sum();
    for k in 0..3 {
        assert!((w[k] - (-w2[k] / 2.0).exp() / z).abs() < 1e-6);
    }
    // The diversity hinge: δ large enough is active, tiny δ is zero.
    assert!(scalar(&b.diversity_loss(1e6)?) > 0.0);
    assert_eq!(scalar(&b.diversity_loss(0.0)?), 0.0);
    Ok(())
}

#[test]
fn pog_closed_form_and_mean_pooling() -> Result<()> {
    // docs/METHOD.md §8: PoG of N([1,0],[1,4]) and N([3,2],[1,1]) = N([2,1.6],[0.5,0.8]).
    let dev = Device::Cpu;
    let mu = Tensor::new(&[[1f32, 0.0], [3.0, 2.0]], &dev)?;
    let lv = Tensor::new(&[[1f32, 4.0], [1.0, 1.0]], &dev)?.log()?;
    let a = assignment(&[0, 0], 1, &dev)?;
    let (m, v) = pool(&mu, &lv, &a, Pooling::Pog, None)?;
    let (m, v) = (
        m.to_vec2::<f32>()?[0].clone(),
        v.to_vec2::<f32>()?[0].clone(),
    );
    for (x, y) in m
        .iter()
        .zip([2.0f32, 1.6])
        .chain(v.iter().zip([0.5f32, 0.8]))
    {
        assert!((x - y).abs() < 1e-6, "{m:?} {v:?}");
    }
    let (m, v) = pool(&mu, &lv, &a, Pooling::Mean, None)?;
    assert_eq!(m.to_vec2::<f32>()?[0], vec![2.0, 1.0]);
    let v = v.to_vec2::<f32>()?[0].clone();
    assert!((v[0] - 1.0).abs() < 1e-6 && (v[1] - 2.5).abs() < 1e-6);
    Ok(())
}

#[test]
fn remedy_terms_behave() -> Result<()> {
    let dev = Device::Cpu;
    // Identical columns: correlation penalty 1; independent-ish columns: much smaller.
    let x = Tensor::new(&[[1f32], [2.0], [-1.0], [0.5]], &dev)?;
    let same = Tensor::cat(&[&x, &x], D::Minus1)?;
    assert!((scalar(&loss::phi_correlation_penalty(&same)?) - 1.0).abs() < 1e-4);
    let other = Tensor::new(&[[1f32, 1.0], [2.0, -1.0], [-1.0, 0.2], [0.5, -0.2]], &dev)?;
    assert!(scalar(&loss::phi_correlation_penalty(&other)?) < 0.5);
    // Balancing is 0 for uniform usage and log K for all users on one basis.
    let uniform = Tensor::new(&[[0.5f32, 0.5], [0.5, 0.5]], &dev)?;
    let one = Tensor::new(&[[1f32, 0.0], [1.0, 0.0]], &dev)?;
    assert!(scalar(&loss::usage_balance(&uniform)?).abs() < 1e-6);
    assert!((scalar(&loss::usage_balance(&one)?) - 2f64.ln()).abs() < 1e-5);
    assert!((scalar(&loss::weight_entropy(&uniform)?) - 2f64.ln()).abs() < 1e-5);
    assert!(scalar(&loss::weight_entropy(&one)?).abs() < 1e-5);
    // Distillation KL is 0 when the weights match.
    assert!(scalar(&loss::distill_kl(&uniform, &uniform.log()?)?).abs() < 1e-6);
    Ok(())
}

#[test]
fn variance_tracking_is_minus_the_correlation_and_its_gradient_orders_the_variances() -> Result<()>
{
    let dev = Device::Cpu;
    // Variances already ordered like the errors, exactly (log-linear): −1 (up to the ε that
    // bounds the gradient at constant variances).
    let err = [0.1f64, 0.2, 0.4, 0.8];
    let ordered: Vec<f32> = err.iter().flat_map(|&e| [e as f32; 3]).collect();
    let v = Tensor::from_vec(ordered, (4, 3), &dev)?;
    let all = [0u32, 1, 2, 3];
    assert!((scalar(&loss::variance_tracking(&v, &all, &err)?) + 1.0).abs() < 1e-4);
    // Reversed: +1. Scaling every variance changes nothing (scale-free).
    let rev = [0.8f64, 0.4, 0.2, 0.1];
    assert!((scalar(&loss::variance_tracking(&v, &all, &rev)?) - 1.0).abs() < 1e-4);
    let scaled = (&v * 7.0)?;
    assert!((scalar(&loss::variance_tracking(&scaled, &all, &err)?) + 1.0).abs() < 1e-4);
    // Constant variances: a bounded gradient.
    let flat = candle_core::Var::from_vec(vec![0.5f32; 8], (4, 2), &dev)?;
    let g = loss::variance_tracking(flat.as_tensor(), &all, &err)?.backward()?;
    let g = g.get(&flat).expect("grad").abs()?.max_all()?;
    assert!(scalar(&g) <= 400.0, "{}", scalar(&g));
    // Fewer than three users, or constant errors: no signal, 0.
    assert_eq!(
        scalar(&loss::variance_tracking(&v, &all[..2], &err[..2])?),
        0.0
    );
    assert_eq!(scalar(&loss::variance_tracking(&v, &all, &[0.3; 4])?), 0.0);
    // Only the kept rows count: rows 1 and 3 swapped in `keep` reverse the order of two.
    let part = scalar(&loss::variance_tracking(&v, &[0, 3, 2, 1], &err)?);
    assert!(part > -1.0 && part < 0.0, "{part}");
    // The gradient against finite differences, on unordered variances.
    let x = Var::from_vec(
        vec![0.5f32, 0.2, 0.9, 0.3, 0.4, 0.7, 0.6, 0.1],
        (4, 2),
        &dev,
    )?;
    let l = loss::variance_tracking(x.as_tensor(), &all, &err)?;
    let g = l
        .backward()?
        .get(&x)
        .expect("grad")
        .flatten_all()?
        .to_vec1::<f32>()?;
    let base = x.as_tensor().flatten_all()?.to_vec1::<f32>()?;
    for i in 0..base.len() {
        let at = |h: f32| -> Result<f64> {
            let mut b = base.clone();
            b[i] += h;
            let t = Tensor::from_vec(b, (4, 2), &dev)?;
            Ok(scalar(&loss::variance_tracking(&t, &all, &err)?))
        };
        let fd = (at(1e-3)? - at(-1e-3)?) / 2e-3;
        assert!((fd - f64::from(g[i])).abs() < 2e-3, "{i}: {fd} vs {}", g[i]);
    }
    Ok(())
}
