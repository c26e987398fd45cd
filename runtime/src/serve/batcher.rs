//! Dynamic batching: the token rows of concurrent requests are gathered into one backbone call
//! (up to a number of texts or a short wait), on one worker thread that owns the backbone's
//! time, behind a bounded queue (a full queue is the caller's 503, not unbounded memory).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::s;
use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::backbone::BackboneOutput;
use crate::session::VrfModel;

/// How requests are gathered into backbone calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Most texts gathered at once (a single larger request still runs whole); the model
    /// sorts them by length and runs them in calls of its batch size, so requests of
    /// different lengths pad less together than apart.
    pub max_texts: usize,
    /// How long the worker waits for more requests after the first one. Zero (the default):
    /// a call takes what queued while the previous one ran, which on CPU is as fast under load
    /// and adds no latency when idle (docs: README, `vrf serve`).
    pub max_wait: Duration,
    /// Most requests waiting for the backbone; beyond it requests are refused.
    pub queue: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_texts: 64,
            max_wait: Duration::ZERO,
            queue: 64,
        }
    }
}

/// Why a request got no backbone output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The queue is full: retry later.
    #[error("the backbone queue is full ({0} requests waiting)")]
    QueueFull(usize),
    /// The backbone failed on this request's texts.
    #[error("backbone: {0}")]
    Failed(String),
    /// The worker has stopped (the server is shutting down).
    #[error("the backbone worker has stopped")]
    Stopped,
}

struct Job {
    rows: Vec<Vec<u32>>,
    reply: oneshot::Sender<Result<BackboneOutput, BatchError>>,
}

/// The handle requests use; the worker thread stops once every handle is dropped, after
/// finishing what is queued.
#[derive(Debug)]
pub struct Batcher {
    tx: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
}

impl Batcher {
    /// Starts the worker thread for `model`.
    pub fn start(
        model: Arc<VrfModel>,
        opts: BatchOptions,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let capacity = opts.queue.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let worker_depth = Arc::clone(&depth);
        std::thread::Builder::new()
            .name("vrf-batcher".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    let mut texts = jobs[0].rows.len();
                    let deadline = Instant::now() + opts.max_wait;
                    while texts < opts.max_texts {
                        let next = match rx.try_recv() {
                            Ok(job) => Some(job),
                            Err(TryRecvError::Disconnected) => None,
                            Err(TryRecvError::Empty) => {
                                let left = deadline.saturating_duration_since(Instant::now());
                                match rx.recv_timeout(left) {
                                    Ok(job) => Some(job),
                                    Err(RecvTimeoutError::Timeout)
                                    | Err(RecvTimeoutError::Disconnected) => None,
                                }
                            }
                        };
                        let Some(job) = next else { break };
                        texts += job.rows.len();
                        jobs.push(job);
                    }
                    worker_depth.fetch_sub(jobs.len(), Ordering::Relaxed);
                    // A request that timed out or whose client left needs no backbone time.
                    jobs.retain(|j| !j.reply.is_closed());
                    if !jobs.is_empty() {
                        // A panic fails this batch's requests (their replies drop), not the
                        // worker: later requests are still served.
                        let run =
                            std::panic::AssertUnwindSafe(|| run_batch(&model, jobs, &metrics));
                        if std::panic::catch_unwind(run).is_err() {
                            eprintln!("vrf serve: a backbone call panicked; its requests got 500");
                        }
                    }
                }
            })?;
        Ok(Self {
            tx,
            depth,
            capacity,
        })
    }

    /// Hidden states and basis rewards of `rows` (token ids), computed with whatever other
    /// requests are waiting; [`BatchError::QueueFull`] at once when the queue is full.
    pub async fn features(&self, rows: Vec<Vec<u32>>) -> Result<BackboneOutput, BatchError> {
        let (reply, rx) = oneshot::channel();
        // Counted before the send so the worker's decrement never goes below zero.
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Job { rows, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(BatchError::QueueFull(self.capacity));
            }
            Err(TrySendError::Disconnected(_)) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(BatchError::Stopped);
            }
        }
        // The worker drains its queue before stopping, so a reply dropped unanswered means the
        // call panicked.
        rx.await.unwrap_or_else(|_| {
            Err(BatchError::Failed(
                "the backbone call failed unexpectedly (see the server log)".into(),
            ))
        })
    }

    /// Requests waiting for the backbone now.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

/// One backbone call over every job's rows, each job answered with its own slice; when the
/// gathered call fails, each job runs alone so one bad request cannot fail the others.
fn run_batch(model: &VrfModel, jobs: Vec<Job>, metrics: &Metrics) {
    let rows: Vec<Vec<u32>> = jobs.iter().flat_map(|j| j.rows.iter().cloned()).collect();
    let started = Instant::now();
    let out = model.features_from_ids(&rows);
    metrics.observe_batch(rows.len(), started.elapsed());
    match out {
        Ok(out) => {
            let mut at = 0;
            for job in jobs {
                let n = job.rows.len();
                let part = BackboneOutput {
                    hidden: out.hidden.slice(s![at..at + n, ..]).to_owned(),
                    rewards: out.rewards.slice(s![at..at + n, ..]).to_owned(),
                };
                at += n;
                let _ = job.reply.send(Ok(part));
            }
        }
        Err(_) if jobs.len() > 1 => {
            for job in jobs {
                run_batch(model, vec![job], metrics);
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(BatchError::Failed(e.to_string())));
            }
        }
    }
}
