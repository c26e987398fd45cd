//! Training-step benchmark: forward + backward + AdamW of the trainer's Qwen3 backbone with a
//! two-layer reward head on Bradley–Terry pairs of random token ids, the way a BT or stage-1
//! step trains. Prints the machine's f32 GEMM rate measured in the same process (the limit),
//! load time, seconds per step, tokens/s, model FLOP/s as % of that limit, and peak RSS.
//!
//! ```text
//! cargo run --release -p vrf-trainer --example train_step_bench -- \
//!     --backbone ~/.cache/vrf/qwen3-0.6b-random --pairs 8 --len 256 --steps 3 --threads 2
//! ```
//!
//! `--backbone tiny` uses the project's tiny from-scratch shape (`Qwen3Config::tiny`, vocabulary
//! `--vocab`). `scripts/bench-train.sh` runs it beside PyTorch eager on the same shapes.
//! Model FLOPs count 6 × (linear weights) per token plus attention's score and mix products
//! (forward 4·L·heads·head_dim per token and layer, backward twice that); recomputation's extra
//! forward is not counted, so a recomputing run shows its real cost as a lower percentage.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Module, Tensor};
use clap::Parser;
use rand::{Rng, SeedableRng};
use vrf_trainer::backbone::{load_hf_dir, pool_last, BackboneOptions, Qwen3, Qwen3Config};
use vrf_trainer::config::{LoraConfig, Matmul, Parallel, Recompute};
use vrf_trainer::optim::{AdamW, ParamGroup};
use vrf_trainer::vars::SeededVarMap;

// The trainer binary's allocator, so that the step is timed as `vrf-trainer fit` runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// `tiny` or a Hugging Face Qwen3 directory.
    #[arg(long, default_value = "tiny")]
    backbone: String,
    /// Vocabulary of the tiny shape.
    #[arg(long, default_value_t = 4096)]
    vocab: usize,
    /// Preference pairs per step (2 × pairs texts).
    #[arg(long, default_value_t = 8)]
    pairs: usize,
    /// Tokens per text.
    #[arg(long, default_value_t = 256)]
    len: usize,
    /// Timed steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Activation recomputation (auto: on for a directory backbone).
    #[arg(long, value_enum, default_value = "auto")]
    recompute: Recompute,
    /// Texts per recomputed micro-batch (0: all).
    #[arg(long, default_value_t = 0)]
    micro_batch: usize,
    /// CPU threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// How the step uses `--threads` (as the trainer's `--parallel`; auto: split the texts).
    #[arg(long, value_enum, default_value = "auto")]
    parallel: Parallel,
    /// cpu or cuda (a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also load the backbone on the CPU and print the largest difference of the device's
    /// forward from the CPU's on a few sequences (for `--device cuda`).
    #[arg(long)]
    check_cpu: bool,
    /// Side of the square matmul that measures the GEMM limit.
    #[arg(long, default_value_t = 2048)]
    gemm: usize,
    /// LoRA rank on every projection, the backbone frozen (0: full fine-tuning).
    #[arg(long, default_value_t = 0)]
    lora_rank: usize,
    /// LoRA α.
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// Precision of the backbone's matrix products (bf16 and tf32: for CUDA).
    #[arg(long, value_enum, default_value = "f32")]
    matmul: Matmul,
}

/// The process's peak resident set (VmHWM) in GiB, where /proc offers it.
fn peak_rss_gib() -> Option<f64> {
    status_gib("VmHWM:")
}

/// The process's current resident set (VmRSS) in GiB.
fn rss_gib() -> Option<f64> {
    status_gib("VmRSS:")
}

fn status_gib(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / (1024.0 * 1024.0))
}

/// f32 GEMM GFLOP/s of an n × n × n matmul (best of 3 after a warm-up).
fn gemm_gflops(n: usize, dev: &Device) -> Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    a.matmul(&b)?;
    dev.synchronize()?;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        a.matmul(&b)?;
        dev.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

/// Model FLOPs of one training step on `tokens` tokens of length `len` (see the module docs).
fn step_flops(cfg: &Qwen3Config, tokens: f64, len: f64) -> f64 {
    let (h, i) = (cfg.hidden_size as f64, cfg.intermediate_size as f64);
    let q = (cfg.num_attention_heads * cfg.head_dim) as f64;
    let kv = (cfg.num_key_value_heads * cfg.head_dim) as f64;
    let linear = cfg.num_hidden_layers as f64 * (h * q * 2.0 + h * kv * 2.0 + 3.0 * h * i);
    let attn = cfg.num_hidden_layers as f64 * 4.0 * len * q;
    tokens * (6.0 * linear + 3.0 * attn)
}

/// Prints the largest |device − CPU| of the final hidden states on 3 × 48 random tokens, the
/// CPU model holding the same weights.
fn check_against_cpu(a: &Args, model: &Qwen3, vars: &SeededVarMap) -> Result<()> {
    let cpu_vars = SeededVarMap::new(0);
    for (name, v) in vars.all_named() {
        cpu_vars.insert(&name, v.as_tensor().to_device(&Device::Cpu)?)?;
    }
    let cpu = Qwen3::new(model.config(), cpu_vars.builder(&Device::Cpu))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let vocab = model.config().vocab_size as u32;
    let ids: Vec<u32> = (0..3 * 48).map(|_| rng.random_range(0..vocab)).collect();
    let ids = Tensor::from_vec(ids, (3, 48), &Device::Cpu)?;
    let want = cpu.forward(&ids)?;
    let got = model
        .forward(&ids.to_device(model.device())?)?
        .to_device(&Device::Cpu)?;
    let diff = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
    println!(
        "forward on {} vs CPU: max |diff| {diff:.3e} (max |hidden| {scale:.3})",
        a.device
    );
    Ok(())
}

fn main() -> Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.steps >= 1, "--steps must be at least 1");
    let recompute = a.recompute.resolve(a.backbone != "tiny");
    let split = if a.parallel.splits_texts() && a.device == "cpu" {
        a.threads
    } else {
        1
    };
    // The limit is the machine's: a product on all the threads.
    vrf_trainer::threads::set(a.threads);
    let dev = vrf_trainer::run::device(&a.device)?;
    let lora = LoraConfig {
        rank: a.lora_rank,
        alpha: a.lora_alpha,
    };
    let opts = BackboneOptions {
        lora,
        matmul: a.matmul,
    };
    opts.check_training_device(&dev)
        .map_err(anyhow::Error::msg)?;
    let gflops = gemm_gflops(a.gemm, &dev)?;
    // Split texts: every operation on one thread (candle reads the count at each product, and
    // its elementwise pool is sized at its first use, below), the threads are the shares'.
    if split > 1 {
        vrf_trainer::threads::set(1);
    }

    let vars = SeededVarMap::new(0);
    let t0 = Instant::now();
    let model = if a.backbone == "tiny" {
        let cfg = Qwen3Config::tiny(a.vocab);
        Qwen3::with_options(&cfg, vars.builder(&dev), opts)?
    } else {
        let cfg = load_hf_dir(&a.backbone, &vars, &dev)
            .with_context(|| format!("loading {}", a.backbone))?;
        Qwen3::with_options(&cfg, vars.builder(&dev), opts)?
    };
    let load_s = t0.elapsed().as_secs_f64();
    let model = if recompute {
        model.with_recompute(a.micro_batch)
    } else {
        model
    }
    .with_split(split);
    let cfg = model.config().clone();
    if a.check_cpu {
        check_against_cpu(&a, &model, &vars)?;
    }
    let h = cfg.hidden_size;
    let vb = vars.builder(&dev);
    let l1 = candle_nn::linear(h, h, vb.pp("head.l1"))?;
    let l2 = candle_nn::linear(h, 1, vb.pp("head.l2"))?;
    // With LoRA the backbone's own weights are frozen: no optimizer moments for them.
    let trainable = vrf_trainer::model::trainable_vars(vars.all_named(), model.frozen());
    let mut opt = AdamW::new(
        vec![ParamGroup {
            vars: trainable,
            lr_mult: 1.0,
        }],
        0.01,
    );

    let n = 2 * a.pairs;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let ids: Vec<u32> = (0..n * a.len)
        .map(|_| rng.random_range(0..cfg.vocab_size as u32))
        .collect();
    let ids = Tensor::from_vec(ids, (n, a.len), &dev)?;
    let lengths = vec![a.len; n];
    let chosen = Tensor::arange_step(0u32, n as u32, 2, &dev)?;
    let rejected = Tensor::arange_step(1u32, n as u32, 2, &dev)?;

    let mut times = Vec::new();
    // Seconds and resident set after each phase of the last step.
    let mut phases: Vec<(&str, f64, f64)> = Vec::new();
    let load_peak = peak_rss_gib().unwrap_or(f64::NAN);
    for step in 0..=a.steps {
        phases.clear();
        let t = Instant::now();
        let mark = |name, phases: &mut Vec<(&str, f64, f64)>| {
            let before: f64 = phases.iter().map(|p| p.1).sum();
            let now = t.elapsed().as_secs_f64();
            phases.push((name, now - before, rss_gib().unwrap_or(f64::NAN)));
        };
        let e = pool_last(&model.forward_recorded(&ids)?, &lengths)?;
        let r = l2.forward(&l1.forward(&e)?.gelu_erf()?)?.squeeze(1)?;
        let margin = (r.index_select(&chosen, 0)? - r.index_select(&rejected, 0)?)?;
        let loss = vrf_trainer::loss::bt_loss(&margin)?.mean_all()?;
        mark("forward", &mut phases);
        let mut grads = loss.backward()?;
        mark("backward", &mut phases);
        model.backward_recorded(&mut grads)?;
        mark("recorded backward", &mut phases);
        opt.step(&grads, 1e-5, 1.0)?;
        drop(grads);
        mark("AdamW", &mut phases);
        let loss = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        anyhow::ensure!(loss.is_finite(), "non-finite loss {loss} at step {step}");
        if step > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let tokens = (n * a.len) as f64;
    let flops = step_flops(&cfg, tokens, a.len as f64);
    let pct = 100.0 * flops / med / (gflops * 1e9);
    let params: usize = vars.all_named().iter().map(|(_, v)| v.elem_count()).sum();
    println!(
        "candle {} | {} ({:.1} M params{}) | {} pairs x {} tokens | threads {} ({}) | recompute {} (micro-batch {}) | \
         GEMM {:.0} GFLOP/s | load {:.2} s | step {:.3} s (median of {}) | {:.0} tokens/s | \
         {:.1} % of GEMM | peak RSS {:.2} GiB",
        if a.device == "cpu" {
            format!("cpu ({})", vrf_trainer::threads::gemm_library())
        } else {
            a.device.clone()
        },
        a.backbone,
        params as f64 / 1e6,
        if lora.enabled() {
            format!(", LoRA r = {} on every projection, backbone frozen", lora.rank)
        } else {
            String::new()
        },
        a.pairs,
        a.len,
        a.threads,
        if model.split_threads() > 1 {
            "texts split"
        } else if a.threads > 1 {
            "operations split"
        } else {
            "one thread"
        },
        if recompute { "on" } else { "off" },
        a.micro_batch,
        gflops,
        load_s,
        med,
        times.len(),
        tokens / med,
        pct,
        peak_rss_gib().unwrap_or(f64::NAN)
    );
    let parts: Vec<String> = phases
        .iter()
        .map(|(n, s, r)| format!("{n} {s:.3} s (RSS {r:.2} GiB)"))
        .collect();
    println!(
        "         peak RSS after loading {load_peak:.2} GiB; last step: {}",
        parts.join(", ")
    );
    Ok(())
}
