//! The scans' inner loops, compiled again for AVX2 and POPCNT and chosen at run time when the CPU
//! has them: the build targets baseline x86-64, and the workspace forbids the `unsafe` that
//! `std::arch` needs, so the choice goes through `pulp` (safe wrappers of the same intrinsics).
//!
//! Why by hand: at a million chunks the int8 pass over the one-bit shortlist (~72k vectors) took
//! 17 ms of a 22 ms query as the compiler left it, and the one-bit pass 5-7 ms without a POPCNT
//! instruction (`--bench vector_index`, `QUARRY_BENCH_N=1000000`). With AVX2 and POPCNT: p50
//! 22.1 -> 17.8 ms; the int8 pass then waited on memory, which prefetching took out (below).

/// The slots a scan visits: every slot of a range, or those a filter accepted.
#[derive(Clone)]
pub(super) enum Slots<'a> {
    All(std::ops::Range<usize>),
    Some(&'a [usize]),
}

impl<'a> Slots<'a> {
    pub(super) fn len(&self) -> usize {
        match self {
            Slots::All(range) => range.len(),
            Slots::Some(slots) => slots.len(),
        }
    }

    /// The `i`th slot visited.
    #[inline(always)]
    pub(super) fn get(&self, i: usize) -> usize {
        match self {
            Slots::All(range) => range.start + i,
            Slots::Some(slots) => slots[i],
        }
    }

    /// The visits `range` of these (a half, for a scan on two threads).
    pub(super) fn sub(&self, range: std::ops::Range<usize>) -> Slots<'a> {
        match self {
            Slots::All(all) => Slots::All(all.start + range.start..all.start + range.end),
            Slots::Some(slots) => Slots::Some(&slots[range]),
        }
    }

    #[inline(always)]
    fn each(self, mut f: impl FnMut(usize)) {
        match self {
            Slots::All(range) => range.for_each(&mut f),
            Slots::Some(slots) => slots.iter().for_each(|&s| f(s)),
        }
    }
}

#[inline(always)]
fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 32];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let tail: i32 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..32 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    acc.iter().sum::<i32>() + tail
}

#[inline(always)]
fn hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// The int8 dot product of `q` with each slot's code, pushed to `out` with the slot.
pub(super) fn int8_dots(q: &[i8], codes: &[i8], slots: Slots<'_>, out: &mut Vec<(i32, usize)>) {
    let d = q.len();
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = *avx2::V3 {
        simd.vectorize(avx2::Dots { simd, q, codes, slots, out });
        return;
    }
    slots.each(|s| out.push((dot_i8_portable(q, &codes[s * d..(s + 1) * d]), s)));
}

/// The Hamming distance of `q` to each slot's signs (`w` words a slot), passed to `f` with the
/// slot.
pub(super) fn distances(q: &[u64], bits: &[u64], slots: Slots<'_>, f: impl FnMut(usize, u32)) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = *avx2::V3 {
        simd.vectorize(avx2::Distances { q, bits, slots, f });
        return;
    }
    let w = q.len();
    let mut f = f;
    slots.each(|s| f(s, hamming(q, &bits[s * w..(s + 1) * w])));
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{__m128i, __m256i, _MM_HINT_T0};

    use pulp::NullaryFnOnce;
    use pulp::x86::V3;

    use super::Slots;

    /// How many vectors ahead of the one scored a shortlist's scan asks memory for.
    const AHEAD: usize = 8;

    pub(super) static V3: std::sync::LazyLock<Option<V3>> = std::sync::LazyLock::new(V3::try_new);

    #[inline(always)]
    pub(super) fn dot(simd: V3, a: &[i8], b: &[i8]) -> i32 {
        let (a16, a_tail) = pulp::as_arrays::<16, i8>(a);
        let (b16, b_tail) = pulp::as_arrays::<16, i8>(b);
        let mut acc: __m256i = simd.avx._mm256_setzero_si256();
        for (x, y) in a16.iter().zip(b16) {
            let x = simd.avx2._mm256_cvtepi8_epi16(pulp::bytemuck::cast::<[i8; 16], __m128i>(*x));
            let y = simd.avx2._mm256_cvtepi8_epi16(pulp::bytemuck::cast::<[i8; 16], __m128i>(*y));
            acc = simd.avx2._mm256_add_epi32(acc, simd.avx2._mm256_madd_epi16(x, y));
        }
        let lanes: [i32; 8] = pulp::bytemuck::cast(acc);
        let tail: i32 = a_tail.iter().zip(b_tail).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
        lanes.iter().sum::<i32>() + tail
    }

    pub(super) struct Dots<'a, 'o> {
        pub simd: V3,
        pub q: &'a [i8],
        pub codes: &'a [i8],
        pub slots: Slots<'a>,
        pub out: &'o mut Vec<(i32, usize)>,
    }

    impl NullaryFnOnce for Dots<'_, '_> {
        type Output = ();
        #[inline(always)]
        fn call(self) {
            let d = self.q.len();
            let Dots { simd, q, codes, slots, out } = self;
            match slots {
                // A shortlist is scattered over the codes: each of its vectors would wait on memory.
                // Asking for the one AHEAD places on first overlaps those waits: a query over a
                // million codes, p50 17.8 -> 6.9 ms (`--bench vector_index`, one session).
                Slots::Some(list) => {
                    for (i, &s) in list.iter().enumerate() {
                        if let Some(&next) = list.get(i + AHEAD) {
                            let at = codes.as_ptr().wrapping_add(next * d);
                            for line in (0..d).step_by(64) {
                                simd.sse._mm_prefetch::<{ _MM_HINT_T0 }>(at.wrapping_add(line));
                            }
                        }
                        out.push((dot(simd, q, &codes[s * d..(s + 1) * d]), s));
                    }
                }
                slots => slots.each(|s| out.push((dot(simd, q, &codes[s * d..(s + 1) * d]), s))),
            }
        }
    }

    pub(super) struct Distances<'a, F> {
        pub q: &'a [u64],
        pub bits: &'a [u64],
        pub slots: Slots<'a>,
        pub f: F,
    }

    impl<F: FnMut(usize, u32)> NullaryFnOnce for Distances<'_, F> {
        type Output = ();
        #[inline(always)]
        fn call(self) {
            let Distances { q, bits, slots, mut f } = self;
            let w = q.len();
            // Compiled with POPCNT here: `count_ones` is one instruction.
            slots.each(|s| f(s, super::hamming(q, &bits[s * w..(s + 1) * w])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers from a fixed seed, so that a failure is reproducible.
    fn bytes(n: usize, seed: u64) -> Vec<i8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % 255) as i64 - 127) as i8
            })
            .collect()
    }

    #[test]
    fn every_path_computes_the_same_dots_and_distances() {
        // 384 as the model's, and lengths with tails past the 16-wide steps.
        for d in [384, 100, 7] {
            let q = bytes(d, 1);
            let codes = bytes(d * 40, 2);
            let want: Vec<(i32, usize)> =
                (0..40).map(|s| (dot_i8_portable(&q, &codes[s * d..(s + 1) * d]), s)).collect();
            let mut all = Vec::new();
            int8_dots(&q, &codes, Slots::All(0..40), &mut all);
            assert_eq!(all, want);
            // A scattered shortlist, longer than the prefetch distance.
            let list: Vec<usize> = (0..40).filter(|s| s % 3 != 1).collect();
            let mut some = Vec::new();
            int8_dots(&q, &codes, Slots::Some(&list), &mut some);
            assert_eq!(some, list.iter().map(|&s| want[s]).collect::<Vec<_>>());
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = *avx2::V3 {
                assert_eq!(avx2::dot(simd, &q, &codes[..d]), want[0].0);
            }
        }
        let words = |seed| {
            bytes(8 * 6 * 30, seed)
                .chunks_exact(8)
                .map(|b| b.iter().fold(0u64, |w, &x| w << 8 | u64::from(x as u8)))
                .collect::<Vec<_>>()
        };
        let (q, bits) = (words(3)[..6].to_vec(), words(4));
        let mut got = Vec::new();
        distances(&q, &bits, Slots::All(0..bits.len() / 6), |s, d| got.push((s, d)));
        let want: Vec<(usize, u32)> = (0..bits.len() / 6)
            .map(|s| (s, q.iter().zip(&bits[s * 6..(s + 1) * 6]).map(|(a, b)| (a ^ b).count_ones()).sum()))
            .collect();
        assert_eq!(got, want);
    }
}
