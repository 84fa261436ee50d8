//! Random number streams for tasks: L'Ecuyer-CMRG, as R's `parallel`
//! package derives them (`nextRNGStream()`), so that a task's numbers
//! depend only on the seed its controller started from and the task's
//! position, never on which worker ran it or how iterations were chunked.
//!
//! A stream is R's `.Random.seed` for `RNGkind("L'Ecuyer-CMRG")`: the kind
//! code (which also says how normals and `sample()` are drawn, kept as the
//! session had it) followed by six state words. Stream `n` of a base seed
//! is the base advanced `n` times by `nextRNGStream()`; here that is one
//! matrix power, so a task's seed costs O(log n) however far into the
//! stream it lies.

use crate::error::{Error, Result};

/// `.Random.seed[1] %% 100` for L'Ecuyer-CMRG.
const LECUYER: i32 = 7;

const M1: u128 = 4_294_967_087;
const M2: u128 = 4_294_944_443;

/// The transition matrices that jump 2^127 steps (R's `A1p127`, `A2p127`).
const A1P127: [[u128; 3]; 3] = [
    [2_427_906_178, 3_580_155_704, 949_770_784],
    [226_153_695, 1_230_515_664, 3_580_155_704],
    [1_988_835_001, 986_791_581, 1_230_515_664],
];
const A2P127: [[u128; 3]; 3] = [
    [1_464_411_153, 277_697_599, 1_610_723_613],
    [32_183_930, 1_464_411_153, 1_022_607_788],
    [2_824_425_944, 32_183_930, 2_093_834_863],
];

type Mat = [[u128; 3]; 3];

fn mul(a: &Mat, b: &Mat, m: u128) -> Mat {
    let mut c = [[0u128; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).fold(0, |acc, k| (acc + a[i][k] * b[k][j]) % m);
        }
    }
    c
}

fn pow(a: &Mat, mut n: u64, m: u128) -> Mat {
    let mut result: Mat = [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
    let mut base = *a;
    while n > 0 {
        if n & 1 == 1 {
            result = mul(&result, &base, m);
        }
        base = mul(&base, &base, m);
        n >>= 1;
    }
    result
}

fn apply(a: &Mat, v: &[u128], m: u128) -> [u128; 3] {
    let mut out = [0u128; 3];
    for i in 0..3 {
        out[i] = (0..3).fold(0, |acc, k| (acc + a[i][k] * v[k]) % m);
    }
    out
}

/// A stream: R's kind code and the six state words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    kind: i32,
    words: [u32; 6],
}

impl Stream {
    /// From R's `.Random.seed` (7 integers, the first the kind code).
    pub fn from_r(seed: &[i32]) -> Result<Stream> {
        if seed.len() != 7 || seed[0] < 0 || seed[0] % 100 != LECUYER {
            return Err(Error::Argument(
                "a seed must be a .Random.seed of RNGkind(\"L'Ecuyer-CMRG\") (7 integers)".into(),
            ));
        }
        let mut s = [0u32; 6];
        for (i, v) in seed[1..].iter().enumerate() {
            s[i] = *v as u32;
        }
        let valid = (s[..3].iter().all(|&x| (x as u128) < M1) && s[..3].iter().any(|&x| x != 0))
            && (s[3..].iter().all(|&x| (x as u128) < M2) && s[3..].iter().any(|&x| x != 0));
        if !valid {
            return Err(Error::Argument("not a valid L'Ecuyer-CMRG seed".into()));
        }
        Ok(Stream { kind: seed[0], words: s })
    }

    /// As R's `.Random.seed`.
    pub fn to_r(self) -> [i32; 7] {
        let mut out = [self.kind; 7];
        for (i, v) in self.words.iter().enumerate() {
            out[i + 1] = *v as i32;
        }
        out
    }

    /// The stream `n` streams further (`nextRNGStream()` applied `n` times).
    pub fn advance(self, n: u64) -> Stream {
        let v: Vec<u128> = self.words.iter().map(|&x| x as u128).collect();
        let a = apply(&pow(&A1P127, n, M1), &v[..3], M1);
        let b = apply(&pow(&A2P127, n, M2), &v[3..], M2);
        Stream { kind: self.kind, words: [a[0] as u32, a[1] as u32, a[2] as u32, b[0] as u32, b[1] as u32, b[2] as u32] }
    }

    /// `n` consecutive streams, the first `first` streams further than
    /// this one.
    pub fn streams(self, first: u64, n: usize) -> Vec<Stream> {
        let mut s = self.advance(first);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(s);
            s = s.advance(1);
        }
        out
    }

    /// Compact text for a task's record: the kind and six state words in
    /// base 36.
    pub fn encode(self) -> String {
        std::iter::once(self.kind as u32).chain(self.words).map(to_base36).collect::<Vec<_>>().join(",")
    }

    /// Inverse of `encode`.
    pub fn decode(s: &str) -> Option<Stream> {
        let w: Vec<u32> = s.split(',').map(|w| u32::from_str_radix(w, 36).ok()).collect::<Option<_>>()?;
        let (kind, words) = w.split_first()?;
        let words: [u32; 6] = words.try_into().ok()?;
        let kind = i32::try_from(*kind).ok()?;
        Some(Stream { kind, words })
    }
}

fn to_base36(mut x: u32) -> String {
    const D: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(D[(x % 36) as usize]);
        x /= 36;
        if x == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RNGkind("L'Ecuyer-CMRG"); set.seed(1); .Random.seed, then
    // parallel::nextRNGStream() once and 1000 times, as R 4.2 prints them.
    const SEED: [i32; 7] = [10407, 1280795612, -169270483, -442010614, -603558397, -222347416, 1489374793];
    const NEXT: [i32; 7] = [10407, 4246464, -231956060, -471632796, 1620595781, 533443421, 594164961];
    const NEXT_1000: [i32; 7] = [10407, -705288750, -333011748, 1990091638, -1736235797, 993743571, 95546049];

    #[test]
    fn streams_match_r() {
        let s = Stream::from_r(&SEED).unwrap();
        assert_eq!(s.advance(0).to_r(), SEED);
        assert_eq!(s.advance(1).to_r(), NEXT);
        assert_eq!(s.advance(1000).to_r(), NEXT_1000);
        let mut step = s;
        for _ in 0..1000 {
            step = step.advance(1);
        }
        assert_eq!(step, s.advance(1000));
    }

    #[test]
    fn consecutive_streams_are_single_advances() {
        let s = Stream::from_r(&SEED).unwrap();
        assert_eq!(s.streams(2, 3), vec![s.advance(2), s.advance(3), s.advance(4)]);
        assert_eq!(s.streams(1000, 1)[0].to_r(), NEXT_1000);
        assert!(s.streams(0, 0).is_empty());
    }

    #[test]
    fn encoding_round_trips_and_stays_short() {
        let s = Stream::from_r(&NEXT_1000).unwrap();
        let e = s.encode();
        assert!(e.len() <= 52, "{e}");
        assert_eq!(Stream::decode(&e), Some(s));
        assert_eq!(Stream::decode("1,2,3"), None);
        // the session's normal and sample kinds travel with the stream
        let mut rounding = NEXT;
        rounding[0] = 407;
        let r = Stream::from_r(&rounding).unwrap();
        assert_eq!(r.advance(1000).to_r()[0], 407);
        assert_eq!(Stream::decode(&r.encode()).unwrap().to_r(), rounding);
        assert!(Stream::from_r(&[1, 2, 3]).is_err());
        assert!(Stream::from_r(&[10403, 0, 0, 0, 1, 1, 1]).is_err());
    }
}
