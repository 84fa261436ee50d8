//! Random number streams for R: the core's one implementation of
//! L'Ecuyer-CMRG streams (`rng::Stream`), which the engine also uses to
//! give each task of a job its own.

use super::{err, numbers};
use crate::error::Error;
use crate::rng::Stream;
use extendr_api::prelude::*;

/// `n` consecutive streams as R's `.Random.seed` vectors, the first
/// `first` streams after `seed` (a `.Random.seed` of L'Ecuyer-CMRG).
#[extendr]
fn rs_rng_streams(seed: Robj, first: f64, n: f64) -> Robj {
    let words: Vec<i32> = match numbers(&seed, "seed") {
        Ok(v) => v.iter().map(|x| *x as i32).collect(),
        Err(e) => return err(&e),
    };
    let counts = crate::protocol::count("first", first, 0, u64::MAX >> 1, false)
        .and_then(|f| crate::protocol::count("n", n, 0, u32::MAX as u64, false).map(|n| (f, n)));
    let (first, n) = match counts {
        Ok((Some(f), Some(n))) => (f, n as usize),
        Ok(_) => return err(&Error::Argument("'first' and 'n' must be whole numbers".into())),
        Err(e) => return err(&e),
    };
    match Stream::from_r(&words) {
        Ok(s) => List::from_values(s.streams(first, n).into_iter().map(|s| Integers::from_values(s.to_r()))).into(),
        Err(e) => err(&e),
    }
}

extendr_module! {
    mod rng;
    fn rs_rng_streams;
}
