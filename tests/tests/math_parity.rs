//! The trainer's candle math equals the runtime's pure-ndarray math (the one the wasm crate uses).

use candle_core::{Device, Result, Tensor};
use ndarray::{Array1, Array2};
use vrf_format::math as rt;
use vrf_trainer::bases::Bases;
use vrf_trainer::config::{ModelConfig, Objective, Pooling};
use vrf_trainer::encoder::{assignment, pair_features, pool, Encoder, Prior};
use vrf_trainer::loss;
use vrf_trainer::vars::SeededVarMap;

const TOL: f32 = 1e-5;

fn arr2(t: &Tensor) -> Array2<f32> {
    let v = t.to_vec2::<f32>().unwrap();
    let (r, c) = (v.len(), v.first().map_or(0, |x| x.len()));
    Array2::from_shape_vec((r, c), v.into_iter().flatten().collect()).unwrap()
}

fn arr1(t: &Tensor) -> Array1<f32> {
    Array1::from(t.to_vec1::<f32>().unwrap())
}

fn flat<S: ndarray::Data<Elem = f32>, D: ndarray::Dimension>(
    a: &ndarray::ArrayBase<S, D>,
) -> Vec<f32> {
    a.iter().copied().collect()
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let err = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0f32, f32::max);
    assert!(
        err < TOL,
        "{what}: max relative error {err:e}\n candle {a:?}\n ndarray {b:?}"
    );
}

struct Setup {
    vars: SeededVarMap,
    enc: Encoder,
    bases: Bases,
    d: usize,
}

fn setup(h: usize, k: usize, d: usize) -> Result<Setup> {
    let cfg = ModelConfig {
        k,
        d,
        ..Default::default()
    };
    let vars = SeededVarMap::new(11);
    let vb = vars.builder(&Device::Cpu);
    let enc = Encoder::new(2 * h, h, d, 1.0, vb.pp("encoder"))?;
    let bases = Bases::new(&cfg, vb.pp("bases"))?;
    Ok(Setup {
        vars,
        enc,
        bases,
        d,
    })
}

fn var(s: &Setup, name: &str) -> Tensor {
    s.vars
        .all_named()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1
        .as_tensor()
        .clone()
}

fn runtime_parts(s: &Setup) -> (rt::Encoder, rt::Bases) {
    let lin = |p: &str| {
        rt::Linear::new(
            arr2(&var(s, &format!("{p}.weight"))),
            arr1(&var(s, &format!("{p}.bias"))),
        )
        .unwrap()
    };
    let mlp = rt::Mlp::new(lin("encoder.l1"), lin("encoder.l2")).unwrap();
    let enc = rt::Encoder::new(mlp, s.d).unwrap();
    let bases = rt::Bases::new(arr2(&s.bases.means), arr2(&s.bases.log_var)).unwrap();
    (enc, bases)
}

#[test]
fn encoder_pog_w2_softmax_match() -> Result<()> {
    let dev = Device::Cpu;
    let (h, k, d) = (16, 5, 6);
    let s = setup(h, k, d)?;
    let (renc, rbases) = runtime_parts(&s);
    let lens = [3usize, 1, 9];
    let m: usize = lens.iter().sum();
    let e_c = Tensor::randn(0f32, 1.0, (m, h), &dev)?;
    let e_r = Tensor::randn(0f32, 1.0, (m, h), &dev)?;
    let feats = pair_features(&e_c, &e_r, None)?;
    let rfeats = rt::pair_features(arr2(&e_c).view(), arr2(&e_r).view(), None).unwrap();
    close(
        feats.flatten_all()?.to_vec1::<f32>()?.as_slice(),
        &flat(&rfeats),
        "pair features",
    );

    let (mu_i, lv_i) = s.enc.forward(&feats)?;
    let (rmu, rlv) = renc.encode(rfeats.view()).unwrap();
    close(
        &mu_i.flatten_all()?.to_vec1::<f32>()?,
        &flat(&rmu),
        "encoder μ",
    );
    close(
        &lv_i.flatten_all()?.to_vec1::<f32>()?,
        &flat(&rlv),
        "encoder log σ²",
    );

    let seg: Vec<usize> = lens
        .iter()
        .enumerate()
        .flat_map(|(u, &n)| std::iter::repeat_n(u, n))
        .collect();
    let a = assignment(&seg, lens.len(), &dev)?;
    for pooling in [Pooling::Pog, Pooling::Mean] {
        let (mu, v) = pool(&mu_i, &lv_i, &a, pooling, None)?;
        let w = s.bases.weights(&mu, &v)?;
        let w2 = s.bases.w2_sq(&mu, &v)?;
        let mut start = 0;
        for (u, &n) in lens.iter().enumerate() {
            let rows = rfeats.slice(ndarray::s![start..start + n, ..]);
            let (pm, pl) = renc.encode(rows).unwrap();
            let post = match pooling {
                Pooling::Pog => rt::pog(pm.view(), pl.view()).unwrap(),
                Pooling::Mean => rt::mean_pool(pm.view(), pl.view()).unwrap(),
            };
            close(
                &mu.get(u)?.to_vec1::<f32>()?,
                &flat(&post.mean()),
                "posterior mean",
            );
            close(
                &v.get(u)?.to_vec1::<f32>()?,
                &flat(&post.var()),
                "posterior variance",
            );
            close(
                &w2.get(u)?.to_vec1::<f32>()?,
                &flat(&rbases.w2_sq(&post).unwrap()),
                "W₂²",
            );
            close(
                &w.get(u)?.to_vec1::<f32>()?,
                &flat(&rbases.weights(&post, 1.0).unwrap()),
                "weights",
            );
            if pooling == Pooling::Pog {
                let up = rt::infer_user(&renc, &rbases, 1.0, rows).unwrap();
                close(
                    &w.get(u)?.to_vec1::<f32>()?,
                    &flat(&up.weights),
                    "infer_user weights",
                );
                // One observation at a time gives the same posterior.
                let mut np = rt::NaturalParams::empty(d);
                for i in 0..n {
                    np.observe(pm.row(i), pl.row(i)).unwrap();
                }
                close(
                    &flat(&np.posterior().unwrap().mean()),
                    &flat(&post.mean()),
                    "incremental",
                );
            }
            start += n;
        }
    }

    // With a population prior: one more factor in the candle product and in the runtime's, for
    // users with pairs, and the prior itself (cold start) for a user with none.
    let prior = Prior {
        mean: Tensor::randn(0f32, 1.0, d, &dev)?,
        log_var: Tensor::randn(0f32, 0.7, d, &dev)?,
    };
    let rprior = rt::Posterior::new(
        arr1(&prior.mean),
        arr1(&prior.bounded_log_var()?).mapv(f32::exp),
    )
    .unwrap();
    let a0 = assignment(&seg, lens.len() + 1, &dev)?;
    let (mu, v) = pool(&mu_i, &lv_i, &a0, Pooling::Pog, Some(&prior))?;
    let mut start = 0;
    for (u, &n) in lens.iter().chain([0usize].iter()).enumerate() {
        let rows = rfeats.slice(ndarray::s![start..start + n, ..]);
        let post = if n == 0 {
            rprior.clone()
        } else {
            let (pm, pl) = renc.encode(rows).unwrap();
            rt::pog_with_prior(pm.view(), pl.view(), Some(&rprior)).unwrap()
        };
        close(
            &mu.get(u)?.to_vec1::<f32>()?,
            &flat(&post.mean()),
            "posterior mean with the prior",
        );
        close(
            &v.get(u)?.to_vec1::<f32>()?,
            &flat(&post.var()),
            "posterior variance with the prior",
        );
        start += n;
    }
    let (m0, v0) = prior.repeat(2)?;
    close(
        &m0.get(1)?.to_vec1::<f32>()?,
        &flat(&rprior.mean()),
        "prior mean",
    );
    close(
        &v0.get(1)?.to_vec1::<f32>()?,
        &flat(&rprior.var()),
        "prior variance",
    );
    Ok(())
}

#[test]
fn moments_losses_and_rewards_match() -> Result<()> {
    let dev = Device::Cpu;
    let k = 6;
    let t = 7;
    let logits = Tensor::randn(0f32, 2.0, (t, k), &dev)?;
    let w = candle_core::Tensor::exp(&logits)?;
    let w = w.broadcast_div(&w.sum_keepdim(1)?)?;
    let delta = Tensor::randn(0f32, 3.0, (t, k), &dev)?;
    let (mu, var) = loss::moments(&w, &delta)?;
    let va = loss::pair_loss(&w, &delta, Objective::Va)?;
    let z = loss::attenuated_logit(&mu, &var)?;
    let (wv, dv) = (arr2(&w), arr2(&delta));
    for i in 0..t {
        let (m, v) = rt::moments(wv.row(i), dv.row(i)).unwrap();
        close(
            &[
                mu.get(i)?.to_scalar::<f32>()?,
                var.get(i)?.to_scalar::<f32>()?,
            ],
            &[m, v],
            "moments",
        );
        close(
            &[va.get(i)?.to_scalar::<f32>()?],
            &[rt::va_loss(wv.row(i), dv.row(i)).unwrap()],
            "L_VA",
        );
        let p = 1.0 / (1.0 + (-z.get(i)?.to_scalar::<f32>()?).exp());
        close(
            &[p],
            &[rt::preference_probability(wv.row(i), dv.row(i)).unwrap()],
            "preference probability",
        );
    }
    // Personalised reward r_u = w_uᵀ φ for N responses.
    let phi = Tensor::randn(0f32, 1.0, (5, k), &dev)?;
    let r = phi.matmul(&w.get(0)?.unsqueeze(1)?)?.squeeze(1)?;
    let rr = rt::personalised_rewards(wv.row(0), arr2(&phi).view()).unwrap();
    close(&r.to_vec1::<f32>()?, &flat(&rr), "personalised rewards");
    Ok(())
}
