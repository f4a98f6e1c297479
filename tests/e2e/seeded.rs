//! A small seeded random number generator (SplitMix64) and the settings
//! that choose how many cases a run makes, so that every generated schedule
//! or input can be made again from its seed.

use std::{
    io::Write,
    ops::Range,
    path::{Path, PathBuf},
};

/// SplitMix64: fast, and the same sequence for the same seed everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_0fc0_ffee)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A number in `range`.
    pub fn within(&mut self, range: Range<u64>) -> u64 {
        range.start + self.below(range.end - range.start)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A range of seeds from an environment variable (`"0..200"`, or one seed
/// `"17"`), else `default`.
pub fn seeds_from_env(name: &str, default: Range<u64>) -> Range<u64> {
    let Ok(text) = std::env::var(name) else {
        return default;
    };
    let parsed = match text.trim().split_once("..") {
        Some((a, b)) => a.trim().parse().ok().zip(b.trim().parse().ok()),
        None => text.trim().parse().ok().map(|a: u64| (a, a + 1)),
    };
    match parsed {
        Some((a, b)) if a < b => a..b,
        _ => panic!("{name}={text:?} is not a seed range like 0..200"),
    }
}

/// A count from an environment variable, else `default`.
pub fn count_from_env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// Writes a run's summary to `target/reliability/{name}.txt` and to the
/// test's stderr handle directly. The test harness captures only the
/// `print!` family of macros, so these lines appear in `cargo test`
/// output even when the test passes.
pub fn report(name: &str, summary: &str) -> PathBuf {
    let path = write_file(name, summary);
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "\n{summary}(written to {})", path.display());
    path
}

/// Writes `target/reliability/{name}.txt` and returns its path.
pub fn write_file(name: &str, text: &str) -> PathBuf {
    let path = reliability_dir().join(format!("{name}.txt"));
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&path, text);
    path
}

/// `target/reliability`, found from the handler binary the tests run
/// (`target/{profile}/handler`), so a custom target directory works too.
fn reliability_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_handler"));
    bin.parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("reliability")
}

#[test]
fn the_same_seed_gives_the_same_sequence() {
    let a: Vec<u64> = (0..5).map(|_| Rng::new(7).next_u64()).collect();
    assert!(a.windows(2).all(|w| w[0] == w[1]));
    let mut r = Rng::new(7);
    let b: Vec<u64> = (0..5).map(|_| r.below(10)).collect();
    let mut r = Rng::new(7);
    let c: Vec<u64> = (0..5).map(|_| r.below(10)).collect();
    assert_eq!(b, c);
}
