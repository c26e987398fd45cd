//! From free user vectors to the simplex: the archetypes of stage 1's user vectors become the
//! K basis rewards and each user's weights their convex combination (docs/METHOD.md §3b).
//!
//! Stage 1 with unconstrained user vectors `r_u = u_uᵀ φ` learns the span of the users'
//! preferences without the routing problem of softmax weights (users stuck on a basis they
//! picked at random early, several styles merged into one basis). VRF needs
//! `r_u = Σ_k w_uk φ'_k` with `w_u` on the simplex: the user vectors' directions are clustered
//! (spherical k-means, K clusters), each cluster's centroid scaled by its members' mean norm is
//! an archetype `a_k`, the new basis rewards are `φ'_k = a_kᵀ φ`, and each user's weights are the
//! simplex point whose combination of archetypes is closest to its vector.

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The simplex re-parametrisation of a set of user vectors.
#[derive(Clone, Debug)]
pub struct Archetypes {
    /// `[K][J]`: row k is archetype `a_k` in the user-vector space.
    pub a: Vec<Vec<f64>>,
    /// `[n][K]`: each user's simplex weights.
    pub w: Vec<Vec<f64>>,
    /// Mean of ‖u − Σ_k w_k a_k‖ / ‖u‖ over users (0: exact).
    pub rel_error: f64,
    /// Users per archetype (by largest weight).
    pub usage: Vec<usize>,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Euclidean projection onto the probability simplex (sort-based, Duchi et al. 2008).
pub fn project_simplex(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    let (mut cum, mut theta) = (0.0, 0.0);
    for (i, x) in s.iter().enumerate() {
        cum += x;
        let t = (cum - 1.0) / (i + 1) as f64;
        if x - t > 0.0 {
            theta = t;
        }
    }
    v.iter().map(|x| (x - theta).max(0.0)).collect()
}

/// Spherical k-means of unit vectors: centroids (unit) and assignments; k-means++ seeding,
/// `restarts` tries, the one with the largest summed cosine kept.
fn spherical_kmeans(x: &[Vec<f64>], k: usize, seed: u64, restarts: usize) -> Vec<Vec<f64>> {
    let n = x.len();
    let j = x[0].len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut best: Option<(f64, Vec<Vec<f64>>)> = None;
    for _ in 0..restarts.max(1) {
        // k-means++ on the cosine distance 1 − cos.
        let mut c: Vec<Vec<f64>> = vec![x[rng.random_range(0..n)].clone()];
        while c.len() < k {
            let d: Vec<f64> = x
                .iter()
                .map(|p| {
                    c.iter()
                        .map(|q| 1.0 - dot(p, q))
                        .fold(f64::INFINITY, f64::min)
                        .max(0.0)
                })
                .collect();
            let total: f64 = d.iter().sum();
            let pick = if total <= 1e-12 {
                rng.random_range(0..n)
            } else {
                let mut r = rng.random::<f64>() * total;
                let mut i = 0;
                while i + 1 < n && r > d[i] {
                    r -= d[i];
                    i += 1;
                }
                i
            };
            c.push(x[pick].clone());
        }
        let mut score = 0.0;
        for _ in 0..100 {
            let assign: Vec<usize> = x
                .iter()
                .map(|p| {
                    (0..k)
                        .max_by(|&a, &b| dot(p, &c[a]).total_cmp(&dot(p, &c[b])))
                        .unwrap_or(0)
                })
                .collect();
            score = x.iter().zip(&assign).map(|(p, &a)| dot(p, &c[a])).sum();
            let mut next = vec![vec![0.0; j]; k];
            let mut count = vec![0usize; k];
            for (p, &a) in x.iter().zip(&assign) {
                count[a] += 1;
                for (s, v) in next[a].iter_mut().zip(p) {
                    *s += v;
                }
            }
            for ci in 0..k {
                if count[ci] == 0 {
                    // An empty cluster takes the point its centroid explains worst.
                    let far = (0..n)
                        .min_by(|&a, &b| {
                            dot(&x[a], &c[assign[a]]).total_cmp(&dot(&x[b], &c[assign[b]]))
                        })
                        .unwrap_or(0);
                    next[ci] = x[far].clone();
                }
                let nn = norm(&next[ci]);
                if nn > 0.0 {
                    next[ci].iter_mut().for_each(|v| *v /= nn);
                }
            }
            let moved = next
                .iter()
                .zip(&c)
                .map(|(a, b)| 1.0 - dot(a, b))
                .fold(0.0, f64::max);
            c = next;
            if moved < 1e-10 {
                break;
            }
        }
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c).unwrap_or_default()
}

/// Simplex weights w minimising ‖u − Aᵀw‖² (projected gradient, step 1/L).
fn simplex_fit(u: &[f64], a: &[Vec<f64>]) -> Vec<f64> {
    let k = a.len();
    // Lipschitz constant of the gradient: 2·λ_max(AAᵀ) ≤ 2·‖A‖_F².
    let l = 2.0 * a.iter().map(|r| dot(r, r)).sum::<f64>().max(1e-12);
    let mut w = vec![1.0 / k as f64; k];
    for _ in 0..500 {
        let recon: Vec<f64> = (0..u.len())
            .map(|j| (0..k).map(|c| w[c] * a[c][j]).sum())
            .collect();
        let resid: Vec<f64> = recon.iter().zip(u).map(|(r, v)| r - v).collect();
        let g: Vec<f64> = a.iter().map(|r| 2.0 * dot(r, &resid)).collect();
        let step: Vec<f64> = w.iter().zip(&g).map(|(x, gi)| x - gi / l).collect();
        w = project_simplex(&step);
    }
    w
}

/// Archetypes of user vectors `u` (`[n][J]`, n ≥ 1) for `k` bases, seeded.
pub fn archetypes(u: &[Vec<f64>], k: usize, seed: u64) -> Archetypes {
    let j = u.first().map_or(0, Vec::len);
    let norms: Vec<f64> = u.iter().map(|v| norm(v)).collect();
    let units: Vec<Vec<f64>> = u
        .iter()
        .zip(&norms)
        .filter(|(_, &r)| r > 1e-12)
        .map(|(v, &r)| v.iter().map(|x| x / r).collect())
        .collect();
    if units.is_empty() || k == 0 {
        return Archetypes {
            a: vec![vec![0.0; j]; k],
            w: vec![vec![1.0 / k.max(1) as f64; k]; u.len()],
            rel_error: 1.0,
            usage: vec![0; k],
        };
    }
    let centroids = spherical_kmeans(&units, k, seed, 8);
    // Scale each direction by the mean norm of the users closest to it.
    let mut sum = vec![0.0; k];
    let mut cnt = vec![0usize; k];
    for (v, &r) in u.iter().zip(&norms) {
        if r <= 1e-12 {
            continue;
        }
        let c = (0..k)
            .max_by(|&a, &b| dot(v, &centroids[a]).total_cmp(&dot(v, &centroids[b])))
            .unwrap_or(0);
        sum[c] += r;
        cnt[c] += 1;
    }
    let mean_norm = norms.iter().sum::<f64>() / norms.len() as f64;
    let a: Vec<Vec<f64>> = centroids
        .iter()
        .enumerate()
        .map(|(c, d)| {
            let s = if cnt[c] > 0 {
                sum[c] / cnt[c] as f64
            } else {
                mean_norm
            };
            d.iter().map(|x| x * s).collect()
        })
        .collect();
    let w: Vec<Vec<f64>> = u.iter().map(|v| simplex_fit(v, &a)).collect();
    let mut usage = vec![0; k];
    let mut err = 0.0;
    for ((v, wi), &r) in u.iter().zip(&w).zip(&norms) {
        let top = (0..k).max_by(|&x, &y| wi[x].total_cmp(&wi[y])).unwrap_or(0);
        usage[top] += 1;
        let recon: Vec<f64> = (0..j)
            .map(|jj| (0..k).map(|c| wi[c] * a[c][jj]).sum())
            .collect();
        let d: Vec<f64> = recon.iter().zip(v).map(|(x, y)| x - y).collect();
        err += norm(&d) / r.max(1e-12);
    }
    Archetypes {
        a,
        w,
        rel_error: err / u.len() as f64,
        usage,
    }
}

/// The output layer `(W₂ [K, H], b₂ [K])` of heads whose rewards are `φ'_k = a_kᵀ φ`, for
/// archetypes `a` `[K, K]`: `(A W₂, A b₂)`.
pub fn rotate_output(
    a: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Option<Tensor>)> {
    let w = a.matmul(weight)?;
    let b = bias
        .map(|b| a.matmul(&b.unsqueeze(1)?)?.squeeze(1))
        .transpose()?;
    Ok((w, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_heads_give_the_archetype_rewards() -> candle_core::Result<()> {
        let dev = candle_core::Device::Cpu;
        let (k, h) = (3, 5);
        let a = Tensor::randn(0f32, 1.0, (k, k), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (k, h), &dev)?;
        let b = Tensor::randn(0f32, 1.0, k, &dev)?;
        let g = Tensor::randn(0f32, 1.0, (7, h), &dev)?;
        let phi = g.matmul(&w.t()?)?.broadcast_add(&b)?;
        let (w2, b2) = rotate_output(&a, &w, Some(&b))?;
        let rotated = g.matmul(&w2.t()?)?.broadcast_add(&b2.unwrap())?;
        let want = phi.matmul(&a.t()?)?;
        let err = (rotated - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-4, "max error {err}");
        Ok(())
    }

    #[test]
    fn projection_lands_on_the_simplex() {
        for v in [
            vec![0.2, 0.3, 0.5],
            vec![3.0, -1.0, 0.5],
            vec![-2.0, -2.0, -2.0],
        ] {
            let p = project_simplex(&v);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{p:?}");
            assert!(p.iter().all(|&x| x >= 0.0));
        }
        assert_eq!(project_simplex(&[0.2, 0.3, 0.5]), vec![0.2, 0.3, 0.5]);
        assert_eq!(project_simplex(&[3.0, -1.0, 0.5]), vec![1.0, 0.0, 0.0]);
    }

    #[test]
    fn recovers_planted_archetypes_and_mixtures() {
        // Three archetypes in R^4 with different scales; users are sparse mixtures of them.
        let truth = [
            vec![3.0, 0.0, 0.0, 1.0],
            vec![0.0, 2.0, 0.0, 1.0],
            vec![0.0, 0.0, 4.0, 1.0],
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut users = Vec::new();
        let mut weights = Vec::new();
        for i in 0..90 {
            let mut w = [0.0; 3];
            w[i % 3] = 1.0;
            if i % 10 == 0 {
                let m = rng.random::<f64>() * 0.3;
                w[i % 3] -= m;
                w[(i + 1) % 3] += m;
            }
            let u: Vec<f64> = (0..4)
                .map(|j| (0..3).map(|c| w[c] * truth[c][j]).sum())
                .collect();
            users.push(u);
            weights.push(w);
        }
        let ar = archetypes(&users, 3, 0);
        assert!(ar.rel_error < 0.05, "relative error {}", ar.rel_error);
        assert_eq!(ar.usage.iter().sum::<usize>(), 90);
        assert!(ar.usage.iter().all(|&c| c >= 25), "{:?}", ar.usage);
        for (u, w) in users.iter().zip(&ar.w) {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            let recon: Vec<f64> = (0..4)
                .map(|j| (0..3).map(|c| w[c] * ar.a[c][j]).sum())
                .collect();
            let d: f64 = recon.iter().zip(u).map(|(a, b)| (a - b).powi(2)).sum();
            assert!(d.sqrt() < 0.5 * norm(u), "{u:?} → {recon:?}");
        }
    }
}
