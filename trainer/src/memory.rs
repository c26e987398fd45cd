//! Giving freed memory back to the OS at phase boundaries.

/// Returns memory the trainer binary's allocator (mimalloc) holds freed to the OS now, instead of
/// after its purge delay: a phase that frees GBs (the candle model after an export wrote it)
/// and is followed by one that allocates outside Rust (ONNX Runtime) would otherwise peak at
/// both. Harmless when mimalloc is not the global allocator (its heaps are then empty).
pub fn release_freed() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; no pointers are passed.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
