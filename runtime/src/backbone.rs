//! The exported backbone + basis-reward heads, run through ONNX Runtime.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ndarray::Array2;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

use crate::error::RuntimeError;
use vrf_format::manifest::OnnxSpec;

/// Where ONNX Runtime executes the backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// The CUDA provider on a device; needs the `cuda` feature and a CUDA build of ONNX Runtime.
    Cuda {
        /// CUDA device ordinal.
        device_id: i32,
    },
}

impl std::str::FromStr for ExecutionProvider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda { device_id: 0 }),
            other => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(device_id)) => Ok(Self::Cuda { device_id }),
                _ => Err(format!(
                    "unknown execution provider {other:?}: use cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

/// Environment variable naming the ONNX Runtime shared library.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<Result<(ort::environment::Environment, PathBuf), String>> =
    OnceLock::new();

/// The library `scripts/fetch-ort.sh` put in `.onnxruntime/` under the working directory or an
/// ancestor of the executable (so `target/release/vrf` finds the repository's copy).
fn fetched_library() -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.iter().find_map(|root| {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(".onnxruntime"))
            .ok()?
            .flatten()
            .flat_map(|version| {
                std::fs::read_dir(version.path())
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|f| f.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so."))
            })
            .collect();
        found.sort();
        found.pop()
    })
}

/// Loads the ONNX Runtime library once per process (explicit path, else `ORT_DYLIB_PATH`).
fn environment(
    library: Option<&Path>,
) -> Result<&'static ort::environment::Environment, RuntimeError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let path = match library
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(ORT_DYLIB_ENV).map(PathBuf::from))
            .or_else(fetched_library)
        {
            Some(p) => p,
            None => {
                return Err(format!(
                    "no ONNX Runtime library found: set {ORT_DYLIB_ENV} to libonnxruntime.so (>= 1.31), \
                     or run scripts/fetch-ort.sh to download it into .onnxruntime/"
                ))
            }
        };
        if !path.is_file() {
            return Err(format!(
                "ONNX Runtime library {} does not exist (run scripts/fetch-ort.sh or fix {ORT_DYLIB_ENV})",
                path.display()
            ));
        }
        let builder = ort::init_from(&path).map_err(|e| format!("loading ONNX Runtime from {}: {e}", path.display()))?;
        let env = builder
            .with_name("vrf")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("initialising ONNX Runtime from {}: {e}", path.display()))?;
        Ok((env, path))
    });
    match result {
        Ok((env, loaded)) => {
            if let Some(asked) = library {
                if asked != loaded {
                    return Err(RuntimeError::OrtLibrary(format!(
                        "ONNX Runtime is already loaded from {} in this process; cannot also load {}",
                        loaded.display(),
                        asked.display()
                    )));
                }
            }
            Ok(env)
        }
        Err(message) => Err(RuntimeError::OrtLibrary(message.clone())),
    }
}

/// Hidden states and basis rewards of a batch of texts.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneOutput {
    /// Last-real-token hidden states `[N, H]`.
    pub hidden: Array2<f32>,
    /// Basis rewards φ `[N, K]`.
    pub rewards: Array2<f32>,
}

/// What the runtime needs of a backbone: right-padded token ids in, last-token hidden states
/// `[batch, hidden]` and basis rewards `[batch, k]` out. [`OnnxBackbone`] is the engine; tests of
/// the session and the service can stand a stub in its place ([`crate::VrfModel::with_backbone`]).
pub trait Backbone: Send + Sync + std::fmt::Debug {
    /// Runs right-padded `ids`/`mask` `[batch, seq]` (row-major).
    fn run(
        &self,
        ids: Vec<i64>,
        mask: Vec<i64>,
        batch: usize,
        seq: usize,
    ) -> Result<BackboneOutput, RuntimeError>;

    /// Where it runs.
    fn provider(&self) -> ExecutionProvider {
        ExecutionProvider::Cpu
    }
}

/// An ONNX Runtime session over `backbone.onnx`; `run` is serialised by a mutex, so one
/// [`OnnxBackbone`] can be shared across threads.
pub struct OnnxBackbone {
    session: Mutex<Session>,
    spec: OnnxSpec,
    hidden: usize,
    k: usize,
    provider: ExecutionProvider,
}

impl std::fmt::Debug for OnnxBackbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxBackbone")
            .field("spec", &self.spec)
            .field("provider", &self.provider)
            .finish()
    }
}

fn ort_err(context: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Ort(format!("{context}: {e}"))
}

impl OnnxBackbone {
    /// Opens `path` with `threads` intra-op threads on `provider`.
    pub fn open(
        path: &Path,
        spec: &OnnxSpec,
        hidden: usize,
        k: usize,
        threads: usize,
        provider: ExecutionProvider,
        library: Option<&Path>,
    ) -> Result<Self, RuntimeError> {
        let env = environment(library)?;
        let ctx = format!("opening {}", path.display());
        let mut builder = Session::builder(env).map_err(|e| ort_err(&ctx, e))?;
        builder = builder
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| ort_err(&ctx, e))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| ort_err(&ctx, e))?
            .with_inter_threads(1)
            .map_err(|e| ort_err(&ctx, e))?;
        if let ExecutionProvider::Cuda { device_id } = provider {
            builder = with_cuda(builder, device_id)?;
        }
        let session = builder
            .commit_from_file(path)
            .map_err(|e| ort_err(&ctx, e))?;
        let names = |outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|o| o.name().to_string())
                .collect::<Vec<_>>()
        };
        let (ins, outs) = (names(session.inputs()), names(session.outputs()));
        for (want, have, what) in [
            (&spec.input_ids, &ins, "input"),
            (&spec.attention_mask, &ins, "input"),
            (&spec.hidden, &outs, "output"),
            (&spec.rewards, &outs, "output"),
        ] {
            if !have.contains(want) {
                return Err(RuntimeError::Input(format!(
                    "{}: the graph has no {what} {want:?} named by the manifest (it has {have:?})",
                    path.display()
                )));
            }
        }
        Ok(Self {
            session: Mutex::new(session),
            spec: spec.clone(),
            hidden,
            k,
            provider,
        })
    }
}

impl Backbone for OnnxBackbone {
    fn provider(&self) -> ExecutionProvider {
        self.provider
    }

    fn run(
        &self,
        ids: Vec<i64>,
        mask: Vec<i64>,
        batch: usize,
        seq: usize,
    ) -> Result<BackboneOutput, RuntimeError> {
        let ids = Tensor::from_array(([batch, seq], ids)).map_err(|e| ort_err("input_ids", e))?;
        let mask =
            Tensor::from_array(([batch, seq], mask)).map_err(|e| ort_err("attention_mask", e))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| RuntimeError::Ort("session mutex poisoned by an earlier panic".into()))?;
        let outputs = session
            .run(ort::inputs![self.spec.input_ids.as_str() => ids, self.spec.attention_mask.as_str() => mask])
            .map_err(|e| ort_err("running the backbone", e))?;
        let take = |name: &str, width: usize| -> Result<Array2<f32>, RuntimeError> {
            let value = outputs
                .get(name)
                .ok_or_else(|| RuntimeError::Ort(format!("no output {name:?}")))?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| ort_err(name, e))?;
            if shape.len() != 2 || shape[0] as usize != batch || shape[1] as usize != width {
                return Err(RuntimeError::Ort(format!(
                    "output {name:?} has shape {shape:?}, expected [{batch}, {width}]"
                )));
            }
            Ok(Array2::from_shape_vec((batch, width), data.to_vec()).expect("shape checked"))
        };
        Ok(BackboneOutput {
            hidden: take(&self.spec.hidden, self.hidden)?,
            rewards: take(&self.spec.rewards, self.k)?,
        })
    }
}

#[cfg(feature = "cuda")]
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
    device_id: i32,
) -> Result<ort::session::builder::SessionBuilder, RuntimeError> {
    let ep = ort::ep::CUDA::default()
        .with_device_id(device_id)
        .build()
        .error_on_failure();
    builder.with_execution_providers([ep]).map_err(|e| {
        RuntimeError::Cuda(format!(
            "registering the CUDA execution provider on device {device_id} failed ({e}); \
             it needs onnxruntime-gpu (CUDA 13 + cuDNN 9) in {ORT_DYLIB_ENV}, not the CPU build"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _: ort::session::builder::SessionBuilder,
    _: i32,
) -> Result<ort::session::builder::SessionBuilder, RuntimeError> {
    Err(RuntimeError::Cuda(
        "this vrf-runtime was built without the `cuda` feature; rebuild with `--features cuda` or use the CPU provider".into(),
    ))
}
