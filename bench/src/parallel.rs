//! Independent fits side by side: a few worker threads take jobs in order and the results come
//! back in that order, so tables and logs do not depend on which fit finished first.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Stack of each worker thread: candle's backward sorts the graph with a recursive walk, which
/// on the main thread has the OS's 8 MiB; a worker gets more than that, not Rust's 2 MiB.
const WORKER_STACK: usize = 64 << 20;

/// How many fits of `threads` CPU threads each the machine runs at once: its cores ÷ `threads`,
/// at least 1.
pub fn default_jobs(threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / threads.max(1)).max(1)
}

/// Runs `f` on every item, at most `workers` at once, items taken in order. Once a result fails
/// `keep_going`, no further item is started (those already running finish): as in a sequential
/// loop that stops there, every item before a stopping one has a result. The entry of an item
/// never started is `None`. With one worker everything runs on the calling thread.
pub fn map_ordered<T, R, F, K>(workers: usize, items: &[T], f: F, keep_going: K) -> Vec<Option<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
    K: Fn(&R) -> bool + Sync,
{
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let r = f(item);
            let go = keep_going(&r);
            out.push(Some(r));
            if !go {
                break;
            }
        }
        out.resize_with(items.len(), || None);
        return out;
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (next, stop, results, f, keep_going) = (&next, &stop, &results, &f, &keep_going);
            let h = std::thread::Builder::new()
                .name(format!("fit-{w}"))
                .stack_size(WORKER_STACK)
                .spawn_scoped(s, move || loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    if !keep_going(&r) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    // A panicking worker poisons the lock; the others' results still count.
                    let mut guard = results.lock().unwrap_or_else(|e| e.into_inner());
                    guard[i] = Some(r);
                });
            match h {
                Ok(h) => handles.push(h),
                // No thread to be had: the workers already started take every item.
                Err(_) if w > 0 => break,
                Err(e) => panic!("cannot start a worker thread: {e}"),
            }
        }
        for h in handles {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order() {
        let items: Vec<u64> = (0..17).collect();
        for workers in [1, 2, 5] {
            let out = map_ordered(
                workers,
                &items,
                |&x| {
                    // Later items finish first.
                    std::thread::sleep(std::time::Duration::from_millis(20 - x));
                    x * x
                },
                |_| true,
            );
            let want: Vec<Option<u64>> = items.iter().map(|x| Some(x * x)).collect();
            assert_eq!(out, want, "{workers} workers");
        }
    }

    #[test]
    fn a_stop_keeps_every_earlier_item() {
        let items: Vec<u32> = (0..12).collect();
        for workers in [1, 3] {
            let out = map_ordered(workers, &items, |&x| x, |&r| r != 4);
            for (i, r) in out.iter().enumerate().take(5) {
                assert_eq!(*r, Some(i as u32), "{workers} workers");
            }
        }
        // One worker starts nothing after the stop.
        let out = map_ordered(1, &items, |&x| x, |&r| r != 4);
        assert!(out[5..].iter().all(Option::is_none), "{out:?}");
    }
}
