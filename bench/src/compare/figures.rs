//! The comparison's figures, each as SVG and PNG (plotters): few-shot curves (Fig. 3a),
//! accuracy by uncertainty tercile (Fig. 3b), best-of-N regret (Fig. 3c), training curves from
//! `metrics.jsonl`, and VRF's preference space (Fig. 4: a PCA projection of seen and unseen
//! users' posterior means with the K basis means, coloured by dominant basis, σ as marker size).
//!
//! Text needs a TrueType font, read at run time: `$VRF_FONT`, else a common system font
//! (DejaVu Sans, Liberation Sans, Arial). Without one the figures are drawn without text and
//! the notes say so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle, Palette, Palette99};

use super::table::label;
use super::{CompareError, CompareReport, CurvePoint, RunAnalysis, Space};
use vrf_trainer::error::Result;

/// Font files tried (after `$VRF_FONT`) for the figures' text.
const FONT_PATHS: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The family every text of the figures uses.
const FAMILY: &str = "sans-serif";

/// Registers the first readable font once; whether text can be drawn.
fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let mut paths: Vec<PathBuf> = std::env::var_os("VRF_FONT")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        paths.extend(FONT_PATHS.iter().map(PathBuf::from));
        for p in paths {
            if let Ok(bytes) = std::fs::read(&p) {
                // plotters keeps fonts for the program's lifetime.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// A method's name and its training curve.
pub type MethodCurve = (String, Vec<CurvePoint>);

/// What the figures need from the runs beyond the report's tables.
#[derive(Default)]
pub struct FigureData {
    /// Per α: each method's training curve (first seed).
    pub curves: Vec<(f64, Vec<MethodCurve>)>,
    /// Per α: VRF's preference space (first seed).
    pub spaces: Vec<(f64, Space)>,
}

impl FigureData {
    /// Keeps the first seed's curves and VRF space of one α's runs.
    pub fn add(&mut self, alpha: f64, runs: &[Vec<RunAnalysis>]) {
        let curves = runs
            .iter()
            .filter_map(|rs| rs.first())
            .map(|r| (r.method.clone(), r.curve.clone()))
            .collect();
        self.curves.push((alpha, curves));
        if let Some(s) = runs.iter().flatten().find_map(|r| r.space.clone()) {
            self.spaces.push((alpha, s));
        }
    }
}

/// A named line of a panel.
struct Series {
    name: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// One chart of a figure.
struct Panel {
    title: String,
    x_desc: String,
    y_desc: String,
    series: Vec<Series>,
    /// Categorical x axis: the label of x = 0, 1, ….
    x_ticks: Option<Vec<String>>,
}

type DrawResult = std::result::Result<(), String>;

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A fixed colour per method, by its position in the comparison's list.
fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// `[lo, hi]` of the values padded by 5 % (a unit range around a constant or nothing).
fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Draws `panels` side by side under `title`.
fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
    text: bool,
) -> DrawResult {
    root.fill(&WHITE).map_err(s)?;
    let area = if text {
        root.titled(title, (FAMILY, 22)).map_err(s)?
    } else {
        root.clone()
    };
    let cells = area.split_evenly((1, panels.len().max(1)));
    for (p, cell) in panels.iter().zip(&cells) {
        let pts = || p.series.iter().flat_map(|x| x.points.iter());
        let (x0, x1) = match &p.x_ticks {
            Some(t) => (-0.3, t.len() as f64 - 0.7),
            None => range(pts().map(|q| q.0)),
        };
        let (y0, y1) = range(pts().map(|q| q.1));
        let mut b = ChartBuilder::on(cell);
        b.margin(12);
        if text {
            b.caption(&p.title, (FAMILY, 16))
                .x_label_area_size(36)
                .y_label_area_size(52);
        }
        let mut chart = b.build_cartesian_2d(x0..x1, y0..y1).map_err(s)?;
        let ticks = p.x_ticks.clone();
        let fmt = move |x: &f64| -> String {
            match &ticks {
                Some(t) => {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < t.len() {
                        t[i as usize].clone()
                    } else {
                        String::new()
                    }
                }
                None => format!("{x}"),
            }
        };
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc(p.x_desc.as_str())
                .y_desc(p.y_desc.as_str())
                .label_style((FAMILY, 12))
                .axis_desc_style((FAMILY, 13))
                .x_label_formatter(&fmt);
            if let Some(t) = &p.x_ticks {
                mesh.x_labels(t.len() + 1).disable_x_mesh();
            }
        } else {
            mesh.disable_axes();
        }
        mesh.draw().map_err(s)?;
        for x in &p.series {
            let pts: Vec<(f64, f64)> = x
                .points
                .iter()
                .copied()
                .filter(|q| q.0.is_finite() && q.1.is_finite())
                .collect();
            let c = x.color;
            let line = chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(s)?;
            if text {
                line.label(x.name.as_str()).legend(move |(a, b)| {
                    PathElement::new(vec![(a, b), (a + 18, b)], c.stroke_width(2))
                });
            }
            if pts.len() <= 12 {
                chart
                    .draw_series(pts.iter().map(|&q| Circle::new(q, 3, c.filled())))
                    .map_err(s)?;
            }
        }
        if text && !p.series.is_empty() {
            chart
                .configure_series_labels()
                .label_font((FAMILY, 11))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(s)?;
        }
    }
    root.present().map_err(s)?;
    Ok(())
}

/// The first two principal directions of `points` (power iteration with deflation on the
/// covariance) and the points' mean; a direction is zero where the data has no variance left.
pub fn pca2(points: &[Vec<f64>]) -> (Vec<f64>, [Vec<f64>; 2]) {
    let d = points.first().map_or(0, Vec::len);
    let n = points.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for p in points {
        for (m, x) in mean.iter_mut().zip(p) {
            *m += x / n;
        }
    }
    let mut cov = vec![vec![0.0; d]; d];
    for p in points {
        for i in 0..d {
            for j in 0..d {
                cov[i][j] += (p[i] - mean[i]) * (p[j] - mean[j]) / n;
            }
        }
    }
    let mut comps = [vec![0.0; d], vec![0.0; d]];
    for comp in comps.iter_mut() {
        // A fixed start with every coordinate non-zero, so no direction is missed by symmetry.
        let mut v: Vec<f64> = (0..d).map(|i| 1.0 + 0.1 * i as f64).collect();
        let mut lambda = 0.0;
        for _ in 0..500 {
            let w: Vec<f64> = (0..d)
                .map(|i| (0..d).map(|j| cov[i][j] * v[j]).sum())
                .collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm < 1e-12 {
                lambda = 0.0;
                break;
            }
            lambda = norm;
            v = w.into_iter().map(|x| x / norm).collect();
        }
        if lambda == 0.0 {
            continue;
        }
        for i in 0..d {
            for j in 0..d {
                cov[i][j] -= lambda * v[i] * v[j];
            }
        }
        *comp = v;
    }
    (mean, comps)
}

fn project(p: &[f64], mean: &[f64], comps: &[Vec<f64>; 2]) -> (f64, f64) {
    let c = |k: usize| {
        p.iter()
            .zip(mean)
            .zip(&comps[k])
            .map(|((x, m), v)| (x - m) * v)
            .sum::<f64>()
    };
    (c(0), c(1))
}

/// Fig. 4: users' posterior means and the bases in the plane of the users' first two
/// principal components.
fn draw_space<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    sp: &Space,
    text: bool,
) -> DrawResult {
    root.fill(&WHITE).map_err(s)?;
    let to64 = |v: &Vec<f32>| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let users: Vec<Vec<f64>> = sp.seen.iter().chain(&sp.unseen).map(to64).collect();
    let (mean, comps) = pca2(&users);
    let u2: Vec<(f64, f64)> = users.iter().map(|p| project(p, &mean, &comps)).collect();
    let b2: Vec<(f64, f64)> = sp
        .bases
        .iter()
        .map(|b| project(&to64(b), &mean, &comps))
        .collect();
    let (x0, x1) = range(u2.iter().chain(&b2).map(|p| p.0));
    let (y0, y1) = range(u2.iter().chain(&b2).map(|p| p.1));
    let mut b = ChartBuilder::on(root);
    b.margin(16);
    if text {
        b.caption(title, (FAMILY, 18))
            .x_label_area_size(36)
            .y_label_area_size(52);
    }
    let mut chart = b.build_cartesian_2d(x0..x1, y0..y1).map_err(s)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("PC 1 of the users' posterior means")
            .y_desc("PC 2")
            .label_style((FAMILY, 12))
            .axis_desc_style((FAMILY, 13));
    } else {
        mesh.disable_axes();
    }
    mesh.draw().map_err(s)?;
    let (lo, hi) = range(sp.sigma.iter().copied());
    let size = |sig: f64| -> i32 {
        if hi - lo <= 1.0 + 1e-9 && sp.sigma.len() < 2 {
            return 4;
        }
        (2.0 + 8.0 * ((sig - lo) / (hi - lo)).clamp(0.0, 1.0)).round() as i32
    };
    let n_seen = sp.seen.len();
    let seen = chart
        .draw_series(u2.iter().enumerate().take(n_seen).map(|(i, &q)| {
            let c = color(sp.top.get(i).copied().unwrap_or(0));
            Circle::new(q, size(sp.sigma[i]), c.mix(0.75).filled())
        }))
        .map_err(s)?;
    if text {
        seen.label("seen user (colour: dominant basis; size: σ)")
            .legend(|(a, b)| Circle::new((a + 8, b), 4, BLACK.mix(0.6).filled()));
    }
    let unseen = chart
        .draw_series(u2.iter().enumerate().skip(n_seen).map(|(i, &q)| {
            let c = color(sp.top.get(i).copied().unwrap_or(0));
            TriangleMarker::new(q, size(sp.sigma[i]) + 1, c.stroke_width(2))
        }))
        .map_err(s)?;
    if text {
        unseen
            .label("unseen user")
            .legend(|(a, b)| TriangleMarker::new((a + 8, b), 5, BLACK.stroke_width(2)));
    }
    let bases = chart
        .draw_series(
            b2.iter()
                .enumerate()
                .map(|(k, &q)| Cross::new(q, 9, color(k).stroke_width(3))),
        )
        .map_err(s)?;
    if text {
        bases
            .label("basis mean b_k")
            .legend(|(a, b)| Cross::new((a + 8, b), 5, BLACK.stroke_width(2)));
        chart
            .draw_series(
                b2.iter()
                    .enumerate()
                    .map(|(k, &q)| Text::new(format!(" b{}", k + 1), q, (FAMILY, 13).into_font())),
            )
            .map_err(s)?;
        chart
            .configure_series_labels()
            .label_font((FAMILY, 11))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(s)?;
    }
    root.present().map_err(s)?;
    Ok(())
}

fn fig_err(path: &Path, message: String) -> vrf_trainer::error::TrainError {
    CompareError::Figure {
        path: path.to_path_buf(),
        message,
    }
    .into()
}

/// Draws one figure with `draw` as `DIR/STEM.svg` and `DIR/STEM.png`.
macro_rules! render {
    ($files:expr, $dir:expr, $stem:expr, $size:expr, $text:expr, $draw:ident ( $($arg:expr),* )) => {{
        let svg = $dir.join(format!("{}.svg", $stem));
        {
            let root = SVGBackend::new(&svg, $size).into_drawing_area();
            $draw(&root, $($arg,)* $text).map_err(|m| fig_err(&svg, m))?;
        }
        $files.push(svg);
        let png = $dir.join(format!("{}.png", $stem));
        {
            let root = BitMapBackend::new(&png, $size).into_drawing_area();
            $draw(&root, $($arg,)* $text).map_err(|m| fig_err(&png, m))?;
        }
        $files.push(png);
    }};
}

/// Moving average of `xs` over `w` points (trailing window).
fn smooth(xs: &[(f64, f64)], w: usize) -> Vec<(f64, f64)> {
    let w = w.max(1);
    let mut sum = 0.0;
    xs.iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= w {
                sum -= xs[i - w].1;
            }
            (x, sum / (i + 1).min(w) as f64)
        })
        .collect()
}

/// Writes every figure into `dir`; returns the files written and notes.
pub fn write_all(
    dir: &Path,
    data: &FigureData,
    report: &CompareReport,
) -> Result<(Vec<PathBuf>, Vec<String>)> {
    std::fs::create_dir_all(dir).map_err(|e| vrf_trainer::error::TrainError::io(dir, e))?;
    let text = font_available();
    let mut notes = Vec::new();
    if !text {
        notes.push(
            "No TrueType font found (set VRF_FONT to a .ttf file): figures are drawn without text."
                .to_string(),
        );
    }
    let mut files = Vec::new();
    let idx = |m: &str| report.methods.iter().position(|x| x == m).unwrap_or(0);
    let alpha_panels =
        |f: &dyn Fn(f64) -> Panel| -> Vec<Panel> { report.alphas.iter().map(|&a| f(a)).collect() };
    let width = |panels: usize| (420 * panels.max(1) as u32, 400);

    // Fig. 3a: few-shot curves.
    let panels = alpha_panels(&|a| Panel {
        title: format!("α = {a}"),
        x_desc: "reference pairs k".into(),
        y_desc: "unseen accuracy (%)".into(),
        series: report
            .few_shot
            .iter()
            .filter(|r| r.alpha == a)
            .map(|r| Series {
                name: label(&r.method),
                color: color(idx(&r.method)),
                points: r
                    .points
                    .iter()
                    .map(|(k, v)| (*k as f64, 100.0 * v.0))
                    .collect(),
            })
            // The few-shot ceiling on the same draws (benchmark data only).
            .chain(
                report
                    .reference
                    .iter()
                    .filter(|(x, _)| *x == a)
                    .map(|(_, r)| Series {
                        name: "ceiling (true MAP)".into(),
                        color: color(report.methods.len()),
                        points: r
                            .ceiling
                            .iter()
                            .map(|p| (p.k as f64, 100.0 * p.unseen.unwrap_or(f64::NAN)))
                            .collect(),
                    }),
            )
            .collect(),
        x_ticks: None,
    });
    let title = "Few-shot accuracy of unseen users";
    render!(
        files,
        dir,
        "fewshot",
        width(panels.len()),
        text,
        draw_lines(title, &panels)
    );

    // Reliability diagram: predicted P(y_c ≻ y_r) against the observed frequency, per method.
    if report.accuracy.iter().any(|r| !r.reliability.is_empty()) {
        let panels = alpha_panels(&|a| Panel {
            title: format!("α = {a}"),
            x_desc: "predicted probability (bin mean)".into(),
            y_desc: "observed frequency".into(),
            series: std::iter::once(Series {
                name: "calibrated".into(),
                color: RGBColor(160, 160, 160),
                points: vec![(0.0, 0.0), (1.0, 1.0)],
            })
            .chain(
                report
                    .accuracy
                    .iter()
                    .filter(|r| r.alpha == a && !r.reliability.is_empty())
                    .map(|r| Series {
                        name: label(&r.method),
                        color: color(idx(&r.method)),
                        points: r.reliability.clone(),
                    }),
            )
            .collect(),
            x_ticks: None,
        });
        let title = "Reliability of unseen users' preference probabilities (15 equal-mass bins)";
        render!(
            files,
            dir,
            "reliability",
            width(panels.len()),
            text,
            draw_lines(title, &panels)
        );
    }

    // Fig. 3b: accuracy by uncertainty tercile.
    if !report.uncertainty.is_empty() {
        let panels = alpha_panels(&|a| Panel {
            title: format!("α = {a}"),
            x_desc: "VRF posterior uncertainty (tercile)".into(),
            y_desc: "unseen accuracy (%)".into(),
            series: report
                .uncertainty
                .iter()
                .filter(|r| r.alpha == a)
                .map(|r| Series {
                    name: label(&r.method),
                    color: color(idx(&r.method)),
                    points: r
                        .terciles
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (i as f64, 100.0 * v.0))
                        .collect(),
                })
                .collect(),
            x_ticks: Some(
                super::uncertainty::TERCILES
                    .iter()
                    .map(|t| t.to_string())
                    .collect(),
            ),
        });
        let title = "Accuracy by VRF uncertainty";
        render!(
            files,
            dir,
            "uncertainty",
            width(panels.len()),
            text,
            draw_lines(title, &panels)
        );
    }

    // Fig. 3c: best-of-N regret against α.
    if !report.best_of_n.is_empty() {
        let mut names: Vec<String> = Vec::new();
        for r in &report.best_of_n {
            if !names.contains(&r.method) {
                names.push(r.method.clone());
            }
        }
        let series = names
            .iter()
            .enumerate()
            .map(|(i, n)| Series {
                name: label(n),
                color: if report.methods.contains(n) {
                    color(idx(n))
                } else {
                    color(report.methods.len() + i)
                },
                points: report
                    .alphas
                    .iter()
                    .enumerate()
                    .filter_map(|(ai, a)| {
                        report
                            .best_of_n
                            .iter()
                            .find(|r| &r.method == n && r.alpha == *a)
                            .map(|r| (ai as f64, r.regret.0))
                    })
                    .collect(),
            })
            .collect();
        let panels = [Panel {
            title: "mean true-utility regret of the best-of-N pick".into(),
            x_desc: "α".into(),
            y_desc: "regret".into(),
            series,
            x_ticks: Some(report.alphas.iter().map(|a| format!("α = {a}")).collect()),
        }];
        let title = "Best-of-N alignment";
        render!(
            files,
            dir,
            "best_of_n",
            (640, 420),
            text,
            draw_lines(title, &panels)
        );
    }

    // Training curves.
    if data
        .curves
        .iter()
        .any(|(_, c)| c.iter().any(|(_, p)| !p.is_empty()))
    {
        let panels: Vec<Panel> = data
            .curves
            .iter()
            .map(|(a, curves)| Panel {
                title: format!(
                    "α = {a} (seed {})",
                    report.seeds.first().copied().unwrap_or(0)
                ),
                x_desc: "training step".into(),
                y_desc: "step accuracy (moving average)".into(),
                series: curves
                    .iter()
                    .map(|(m, c)| {
                        let pts: Vec<(f64, f64)> = c.iter().map(|p| (p.0, p.2)).collect();
                        Series {
                            name: label(m),
                            color: color(idx(m)),
                            points: smooth(&pts, (pts.len() / 25).max(1)),
                        }
                    })
                    .collect(),
                x_ticks: None,
            })
            .collect();
        let title = "Training curves (metrics.jsonl)";
        render!(
            files,
            dir,
            "training_curves",
            width(panels.len()),
            text,
            draw_lines(title, &panels)
        );
    }

    // Fig. 4: the preference space per α.
    for (a, sp) in &data.spaces {
        if sp.seen.len() + sp.unseen.len() == 0 {
            continue;
        }
        let title = format!("VRF preference space, α = {a}");
        let stem = format!("preference_space-alpha-{a}");
        render!(files, dir, stem, (720, 620), text, draw_space(&title, sp));
    }
    Ok((files, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_finds_the_direction_of_spread() {
        // Points along (1, 1, 0) with a little spread along (0, 0, 1).
        let pts: Vec<Vec<f64>> = (0..20)
            .map(|i| {
                let t = i as f64 - 10.0;
                vec![t, t, 0.1 * ((i % 3) as f64 - 1.0)]
            })
            .collect();
        let (mean, [c1, c2]) = pca2(&pts);
        assert!(mean[0].abs() < 0.6);
        let r = std::f64::consts::FRAC_1_SQRT_2;
        assert!(
            (c1[0].abs() - r).abs() < 1e-6 && (c1[1].abs() - r).abs() < 1e-6,
            "{c1:?}"
        );
        assert!(c2[2].abs() > 0.99, "{c2:?}");
        // Constant data: no direction.
        let (_, [z, _]) = pca2(&[vec![1.0, 2.0], vec![1.0, 2.0]]);
        assert!(z.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn moving_average() {
        let s = smooth(&[(1.0, 1.0), (2.0, 3.0), (3.0, 5.0)], 2);
        assert_eq!(s, vec![(1.0, 1.0), (2.0, 2.0), (3.0, 4.0)]);
    }
}
