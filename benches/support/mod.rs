//! What every benchmark here shares: settings from FINLEDGER_BENCH_* variables, the full-or-smoke
//! size, and the median of repeats. (Each benchmark uses only part of it.)
#![allow(dead_code)]

/// A setting from the environment, or its default.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `full_size` under `cargo bench` (which passes `--bench`); `smoke_size` under `cargo test`, where the
/// same code runs as a small smoke test.
pub fn scale(full_size: usize, smoke_size: usize) -> usize {
    if std::env::args().any(|arg| arg == "--bench") {
        full_size
    } else {
        smoke_size
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// p50 and p99 of one call, in µs, over `count` calls of `run(i)`, and how many returned true.
pub fn latencies(count: usize, mut run: impl FnMut(usize) -> bool) -> (f64, f64, usize) {
    let mut samples = Vec::with_capacity(count);
    let mut trues = 0;
    for i in 0..count {
        let start = std::time::Instant::now();
        trues += run(i) as usize;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    (samples[count / 2], samples[count * 99 / 100], trues)
}
