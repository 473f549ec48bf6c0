//! What every benchmark here shares: settings from FINLEDGER_BENCH_* variables, the full-or-smoke
//! size, and the median of repeats.

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
