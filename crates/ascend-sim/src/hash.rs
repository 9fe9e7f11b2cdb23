//! Deterministic hashing: every generated value is a pure function of
//! `(org seed, stream, index)`, so data never changes for a given seed and
//! nothing per record needs to be stored.
//!
//! The mixer is splitmix64's finaliser; [`SplitMix`] is the splitmix64
//! generator. Both are written here on purpose (no `rand`): their output is
//! fixed forever, whatever happens to crates on the registry.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function: a bijective, well-mixing map of `u64`.
pub(crate) const fn mix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a seed, a stream number (what is being decided) and an index.
pub(crate) const fn hash3(seed: u64, stream: u64, index: u64) -> u64 {
    mix64(seed ^ mix64(stream.wrapping_mul(0x0100_0000_01B3) ^ mix64(index)))
}

/// `h` mapped onto `0..n` (Lemire's multiply-shift; `n == 0` gives 0).
pub(crate) const fn below(h: u64, n: u64) -> u64 {
    ((h as u128 * n as u128) >> 64) as u64
}

/// The splitmix64 generator, for sequences of decisions (one record's
/// fields, one mutate batch, the fault dice).
#[derive(Clone, Debug)]
pub(crate) struct SplitMix {
    state: u64,
}

impl SplitMix {
    pub(crate) const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        // mix64 adds the increment itself, so this is splitmix64 exactly.
        let out = mix64(self.state);
        self.state = self.state.wrapping_add(GOLDEN);
        out
    }

    /// Uniform in `0..n` (0 when `n == 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        below(self.next_u64(), n)
    }

    /// True with probability `percent / 100`.
    pub(crate) fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// One element of a non-empty slice (the first when empty is impossible
    /// by construction; an empty slice returns `None`).
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let i = self.below(items.len() as u64) as usize;
        items.get(i)
    }

    /// A `&'static str` from a table, `""` if the table is empty.
    pub(crate) fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        self.pick(items).copied().unwrap_or("")
    }
}

/// Index into cumulative weights (`weights` are plain weights, not sums).
pub(crate) fn weighted(h: u64, weights: &[u64]) -> usize {
    let total: u64 = weights.iter().sum();
    let mut x = below(h, total.max(1));
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // Reference values of splitmix64 seeded with 0 (Vigna's C code).
        let mut r = SplitMix::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_stays_in_range_and_weighted_respects_zero_weights() {
        for i in 0..1000 {
            let h = hash3(7, 3, i);
            assert!(below(h, 17) < 17);
            let w = weighted(h, &[0, 5, 0, 1]);
            assert!(w == 1 || w == 3, "picked zero-weight index {w}");
        }
    }
}
