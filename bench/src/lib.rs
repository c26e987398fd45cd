//! vrf-bench: the experiment harness around the vrf-trainer engine.
//!
//! [`reference`] (rankers on the benchmark's bag of words and true scorers: the ceilings),
//! [`baselines`] (the paper's comparison methods LoRe, PReF, PAL-B and VPL, trained on the
//! engine's prepared runs through [`Baselines`]), [`experiment`] (seeds, ablations, the summary
//! table), [`parallel`] (independent fits side by side), [`score`] (per-user rewards and accuracies of a trained run) and [`compare`] (the
//! methods side by side: tables and figures). Its CLI, `vrf-bench`, runs the main job.

#![warn(missing_docs)]

pub mod baselines;
pub mod compare;
pub mod experiment;
pub mod parallel;
pub mod reference;
pub mod score;

use std::path::Path;

use vrf_trainer::error::{Result, TrainError};
use vrf_trainer::eval::EvalReport;
use vrf_trainer::run::{ExternalMethod, Prepared};

/// The comparison baselines as the engine's [`ExternalMethod`]: pass `Some(&Baselines)` in
/// [`vrf_trainer::run::FitOptions::external`] (and to `eval_run`) to fit or evaluate them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Baselines;

impl ExternalMethod for Baselines {
    fn fit(&self, dir: &Path, p: &Prepared, resume: bool, progress: bool) -> Result<EvalReport> {
        baselines::fit(dir, p, resume, progress)
    }

    fn evaluate(&self, dir: &Path, p: &Prepared, train_seconds: Option<f64>) -> Result<EvalReport> {
        baselines::evaluate_run(dir, p, train_seconds)
    }
}

// The harness's own failures travel in the engine's error (one `Result` through fits and
// analyses), boxed with their type so callers can downcast.
impl From<baselines::BaselineError> for TrainError {
    fn from(e: baselines::BaselineError) -> Self {
        TrainError::External(Box::new(e))
    }
}

impl From<compare::CompareError> for TrainError {
    fn from(e: compare::CompareError) -> Self {
        TrainError::External(Box::new(e))
    }
}
