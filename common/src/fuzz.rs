//! A small mutation fuzzer that runs under `cargo test` on the stable toolchain (cargo-fuzz and
//! libFuzzer need nightly). Not coverage-guided: each input is a seed from the target's corpus directory
//! (real inputs, kept small in the repository) or empty, with 1 to 8 random mutations (bit flips,
//! interesting values, inserted, deleted, duplicated or spliced ranges, truncation).
//!
//! Every target first replays its whole corpus, then runs mutated inputs until its time budget is spent:
//! `FUZZ_SECONDS` (per target; the caller's default otherwise). A panicking input is written to
//! `<crash_dir>/<target>-<hash>.bin` and the test fails naming it and the `FUZZ_SEED` that reproduces
//! the run. Put a crash file into the corpus to keep it as a regression case.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One fuzz target's settings.
pub struct Target<'a> {
    /// Name, also the corpus subdirectory.
    pub name: &'a str,
    /// Directory holding one subdirectory of seed files per target.
    pub corpus: &'a Path,
    /// Where panicking inputs are written.
    pub crash_dir: &'a Path,
    /// Time budget unless `FUZZ_SECONDS` says otherwise.
    pub default_budget: Duration,
    /// Longest input generated.
    pub max_len: usize,
}

/// Runs `f` on the corpus and then on mutated inputs until the budget is spent; panics (failing the
/// test) on the first input `f` panics on. Returns the number of inputs run.
pub fn run(t: &Target<'_>, f: impl Fn(&[u8])) -> u64 {
    let seeds = load(&t.corpus.join(t.name));
    assert!(
        !seeds.is_empty(),
        "no seeds in {}",
        t.corpus.join(t.name).display()
    );
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(t.default_budget, Duration::from_secs_f64);
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let mut rng = Rng(seed | 1);
    let check = |input: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
            let path = save(t, input);
            panic!(
                "fuzz target {} panicked on {} (FUZZ_SEED={seed})",
                t.name,
                path.display()
            );
        }
    };
    for s in &seeds {
        check(s);
    }
    let start = Instant::now();
    let mut runs = seeds.len() as u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            let input = mutate(&mut rng, &seeds, t.max_len);
            check(&input);
            runs += 1;
        }
    }
    eprintln!(
        "fuzz {}: {runs} inputs in {:.1} s (FUZZ_SEED={seed})",
        t.name,
        start.elapsed().as_secs_f64()
    );
    runs
}

fn load(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn save(t: &Target<'_>, input: &[u8]) -> PathBuf {
    let _ = std::fs::create_dir_all(t.crash_dir);
    let path = t
        .crash_dir
        .join(format!("{}-{:08x}.bin", t.name, crc32fast::hash(input)));
    let _ = std::fs::write(&path, input);
    path
}

/// xorshift64*: deterministic for a given `FUZZ_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u32; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0xff_ffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut v = if rng.below(16) == 0 {
        Vec::new()
    } else {
        seeds[rng.below(seeds.len())].clone()
    };
    for _ in 0..=rng.below(8) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                // An interesting value, big-endian, 1 to 4 bytes wide.
                let width = 1 + rng.below(4);
                let value = INTERESTING[rng.below(INTERESTING.len())].to_be_bytes();
                let at = rng.below(len);
                for (k, b) in value[4 - width..].iter().enumerate() {
                    if let Some(slot) = v.get_mut(at + k) {
                        *slot = *b;
                    }
                }
            }
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                v.drain(at..at + n);
            }
            5 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let copy = v[at..at + n].to_vec();
                let to = rng.below(len + 1);
                v.splice(to..to, copy);
            }
            6 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let at = rng.below(len + 1);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            _ => {
                let keep = rng.below(len + 1);
                v.truncate(keep);
            }
        }
    }
    v.truncate(max_len);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_within_bounds_and_vary() {
        let seeds = vec![vec![1u8; 100], vec![2u8; 3]];
        let mut rng = Rng(7);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..2_000 {
            let m = mutate(&mut rng, &seeds, 128);
            assert!(m.len() <= 128);
            distinct.insert(m);
        }
        assert!(distinct.len() > 1_000, "{}", distinct.len());
    }

    #[test]
    fn a_panicking_input_fails_the_run_and_is_saved() {
        let dir = std::env::temp_dir().join(format!("fuzz-selftest-{}", std::process::id()));
        let corpus = dir.join("corpus");
        std::fs::create_dir_all(corpus.join("t")).expect("mkdir");
        std::fs::write(corpus.join("t").join("seed"), [0u8, 1, 2]).expect("write");
        let crashes = dir.join("crashes");
        let target = Target {
            name: "t",
            corpus: &corpus,
            crash_dir: &crashes,
            default_budget: Duration::from_secs(5),
            max_len: 64,
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            run(&target, |d| assert!(!d.contains(&0xff), "found it"))
        }));
        assert!(result.is_err(), "the fuzzer should find a 0xff byte");
        let saved = std::fs::read_dir(&crashes).expect("crash dir").count();
        assert_eq!(saved, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
