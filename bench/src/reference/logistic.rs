//! A small deterministic L2-regularised logistic regression on pair-difference features (no
//! intercept: a pair's label is the sign of `w · (f(chosen) − f(rejected))`), fitted by
//! truncated Newton (conjugate gradient on Hessian-vector products, Armijo backtracking), and
//! the choice of its strength by held-out log-loss.

/// Sparse rows (CSR): one pair-difference feature vector per row.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    dim: usize,
    ptr: Vec<usize>,
    idx: Vec<u32>,
    val: Vec<f64>,
}

impl Rows {
    /// No rows, `dim` features.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            ptr: vec![0],
            idx: vec![],
            val: vec![],
        }
    }

    /// Appends a row from (feature, value) entries (indices below `dim`, zeros skipped).
    pub fn push(&mut self, entries: impl IntoIterator<Item = (usize, f64)>) {
        for (j, v) in entries {
            debug_assert!(j < self.dim);
            if v != 0.0 {
                self.idx.push(j as u32);
                self.val.push(v);
            }
        }
        self.ptr.push(self.idx.len());
    }

    /// Appends a dense row (its length is `dim`).
    pub fn push_dense(&mut self, x: &[f64]) {
        self.push(x.iter().copied().enumerate());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ptr.len() - 1
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        self.dim
    }

    fn entries(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let r = self.ptr[i]..self.ptr[i + 1];
        self.idx[r.clone()]
            .iter()
            .zip(&self.val[r])
            .map(|(&j, &v)| (j as usize, v))
    }

    /// `w · row i`.
    pub fn dot(&self, i: usize, w: &[f64]) -> f64 {
        self.entries(i).map(|(j, v)| v * w[j]).sum()
    }

    /// `out += a · row i`.
    fn axpy(&self, i: usize, a: f64, out: &mut [f64]) {
        for (j, v) in self.entries(i) {
            out[j] += a * v;
        }
    }
}

/// The L2 penalty `strength / 2 · ‖w − centre‖²` (centre 0 when `None`): ridge, or a Gaussian
/// prior of precision `strength` around a population mean (MAP).
#[derive(Clone, Copy, Debug)]
pub struct Penalty<'a> {
    /// λ (> 0 keeps the problem strictly convex even on separable pairs).
    pub strength: f64,
    /// Prior mean; `None` is 0.
    pub centre: Option<&'a [f64]>,
}

/// `log(1 + e^{−z})`, stable for large |z|.
pub fn softplus_neg(z: f64) -> f64 {
    if z > 0.0 {
        (-z).exp().ln_1p()
    } else {
        -z + z.exp().ln_1p()
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Sum of `weight · log(1 + e^{−w·x})` over `items` (row index, weight).
pub fn log_loss(rows: &Rows, items: &[(usize, f64)], w: &[f64]) -> f64 {
    items
        .iter()
        .map(|&(i, c)| c * softplus_neg(rows.dot(i, w)))
        .sum()
}

struct Objective<'a> {
    rows: &'a Rows,
    items: &'a [(usize, f64)],
    pen: Penalty<'a>,
}

impl Objective<'_> {
    fn centre(&self, j: usize) -> f64 {
        self.pen.centre.map_or(0.0, |m| m[j])
    }

    fn value(&self, w: &[f64]) -> f64 {
        let r: f64 = (0..w.len()).map(|j| (w[j] - self.centre(j)).powi(2)).sum();
        log_loss(self.rows, self.items, w) + 0.5 * self.pen.strength * r
    }

    /// Gradient and the per-item curvature `weight · σ(z)σ(−z)`.
    fn gradient(&self, w: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let mut g: Vec<f64> = (0..w.len())
            .map(|j| self.pen.strength * (w[j] - self.centre(j)))
            .collect();
        let mut curv = Vec::with_capacity(self.items.len());
        for &(i, c) in self.items {
            let p = sigmoid(self.rows.dot(i, w));
            self.rows.axpy(i, -c * (1.0 - p), &mut g);
            curv.push(c * p * (1.0 - p));
        }
        (g, curv)
    }

    fn hess_vec(&self, curv: &[f64], v: &[f64]) -> Vec<f64> {
        let mut out: Vec<f64> = v.iter().map(|x| self.pen.strength * x).collect();
        for (&(i, _), &h) in self.items.iter().zip(curv) {
            let xv = self.rows.dot(i, v);
            self.rows.axpy(i, h * xv, &mut out);
        }
        out
    }
}

/// Conjugate gradient for `H p = −g`, stopped at a forcing tolerance (truncated Newton).
fn newton_direction(obj: &Objective, curv: &[f64], g: &[f64]) -> Vec<f64> {
    let n = g.len();
    let gnorm = dot(g, g).sqrt();
    let tol = gnorm * gnorm.sqrt().min(0.5);
    let mut p = vec![0.0; n];
    let mut r: Vec<f64> = g.iter().map(|x| -x).collect();
    let mut d = r.clone();
    let mut rr = dot(&r, &r);
    for _ in 0..n.clamp(1, 50) {
        if rr.sqrt() <= tol {
            break;
        }
        let hd = obj.hess_vec(curv, &d);
        let dhd = dot(&d, &hd);
        if dhd <= 0.0 {
            break;
        }
        let a = rr / dhd;
        for j in 0..n {
            p[j] += a * d[j];
            r[j] -= a * hd[j];
        }
        let rr_new = dot(&r, &r);
        let b = rr_new / rr;
        rr = rr_new;
        for j in 0..n {
            d[j] = r[j] + b * d[j];
        }
    }
    if dot(&p, g) >= 0.0 {
        // CG made no progress (numerically flat): fall back to steepest descent.
        return r;
    }
    p
}

/// Minimises `Σ weight · log(1 + e^{−w·x}) + penalty` over `items` (row index, weight) from
/// `init` (the penalty's centre, or 0). Deterministic; `strength` must be positive.
pub fn fit(rows: &Rows, items: &[(usize, f64)], pen: Penalty, init: Option<&[f64]>) -> Vec<f64> {
    let obj = Objective { rows, items, pen };
    let mut w: Vec<f64> = match (init, pen.centre) {
        (Some(w0), _) | (None, Some(w0)) => w0.to_vec(),
        (None, None) => vec![0.0; rows.dim()],
    };
    let mut f = obj.value(&w);
    for _ in 0..100 {
        let (g, curv) = obj.gradient(&w);
        let gmax = g.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if gmax <= 1e-9 * (1.0 + f.abs()) {
            break;
        }
        let p = newton_direction(&obj, &curv, &g);
        let slope = dot(&g, &p);
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..40 {
            let cand: Vec<f64> = w.iter().zip(&p).map(|(a, b)| a + t * b).collect();
            let fc = obj.value(&cand);
            if fc <= f + 1e-4 * t * slope {
                accepted = Some((cand, fc));
                break;
            }
            t *= 0.5;
        }
        let Some((cand, fc)) = accepted else { break };
        let done = f - fc <= 1e-15 * (1.0 + f.abs());
        w = cand;
        f = fc;
        if done {
            break;
        }
    }
    w
}

/// Fraction of `items` whose row has `w · x > 0` (weighted; ties count as wrong), NaN if empty.
pub fn accuracy(rows: &Rows, items: &[(usize, f64)], w: &[f64]) -> f64 {
    let total: f64 = items.iter().map(|&(_, c)| c).sum();
    let ok: f64 = items
        .iter()
        .filter(|&&(i, _)| rows.dot(i, w) > 0.0)
        .map(|&(_, c)| c)
        .sum();
    if total > 0.0 {
        ok / total
    } else {
        f64::NAN
    }
}

/// The strength chosen from a grid and the held-out loss of every candidate.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Selection {
    /// The chosen λ.
    pub strength: f64,
    /// `(λ, mean held-out log-loss per pair)` for each grid value.
    pub curve: Vec<(f64, f64)>,
}

/// Picks the grid value with the least held-out loss; `heldout(λ)` returns (summed held-out
/// log-loss, pairs held out). Ties go to the stronger penalty (the simpler model).
pub fn select(grid: &[f64], mut heldout: impl FnMut(f64) -> (f64, f64)) -> Selection {
    let curve: Vec<(f64, f64)> = grid
        .iter()
        .map(|&l| {
            let (loss, n) = heldout(l);
            (l, if n > 0.0 { loss / n } else { f64::INFINITY })
        })
        .collect();
    let mut best = (f64::NAN, f64::INFINITY);
    for &(l, m) in &curve {
        let better = m < best.1 - 1e-12 || (m <= best.1 + 1e-12 && l > best.0);
        if best.0.is_nan() || better {
            best = (l, m);
        }
    }
    Selection {
        strength: best.0,
        curve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(n: usize) -> Vec<(usize, f64)> {
        (0..n).map(|i| (i, 1.0)).collect()
    }

    #[test]
    fn separable_pairs_are_all_ranked_right() {
        let mut rows = Rows::new(3);
        let truth = [1.0, -2.0, 0.5];
        let mut n = 0;
        for a in -3..=3 {
            for b in -3..=3 {
                let mut x = [a as f64, b as f64, (a * b % 3) as f64];
                let s = dot(&x, &truth);
                if s.abs() < 1e-9 {
                    continue;
                }
                // Orient every pair so that the first item is the preferred one.
                if s < 0.0 {
                    x.iter_mut().for_each(|v| *v = -*v);
                }
                rows.push_dense(&x);
                n += 1;
            }
        }
        let items = all(n);
        let pen = Penalty {
            strength: 1e-3,
            centre: None,
        };
        let w = fit(&rows, &items, pen, None);
        assert_eq!(accuracy(&rows, &items, &w), 1.0);
    }

    #[test]
    fn gradient_vanishes_at_the_optimum() {
        let mut rows = Rows::new(2);
        for x in [[1.0, 0.5], [-0.3, 1.0], [0.2, -0.7], [1.5, 1.5]] {
            rows.push_dense(&x);
        }
        let items = all(4);
        let centre = [0.3, -0.1];
        let pen = Penalty {
            strength: 0.7,
            centre: Some(&centre),
        };
        let w = fit(&rows, &items, pen, None);
        let obj = Objective {
            rows: &rows,
            items: &items,
            pen,
        };
        let (g, _) = obj.gradient(&w);
        assert!(g.iter().all(|x| x.abs() < 1e-8), "{g:?}");
    }

    #[test]
    fn huge_prior_precision_returns_the_centre() {
        let mut rows = Rows::new(2);
        rows.push_dense(&[1.0, -1.0]);
        rows.push_dense(&[2.0, 0.5]);
        let centre = [-0.4, 0.9];
        let pen = Penalty {
            strength: 1e9,
            centre: Some(&centre),
        };
        let w = fit(&rows, &all(2), pen, None);
        assert!((w[0] - centre[0]).abs() < 1e-6 && (w[1] - centre[1]).abs() < 1e-6);
    }

    #[test]
    fn selection_prefers_the_least_loss_then_the_stronger_penalty() {
        let s = select(&[0.1, 1.0, 10.0], |l| ((l - 1.0).abs(), 1.0));
        assert_eq!(s.strength, 1.0);
        let s = select(&[0.1, 1.0, 10.0], |_| (1.0, 2.0));
        assert_eq!(s.strength, 10.0);
        assert_eq!(s.curve.len(), 3);
    }
}
