//! Picking the best of several scores.

/// Index of the largest value, the first one on ties; NaN values are skipped (they never win).
/// `None` when `values` is empty or all NaN.
///
/// ```
/// use vrf_format::math::argmax;
/// assert_eq!(argmax([1.0_f32, 3.0, 3.0, f32::NAN]), Some(1));
/// assert_eq!(argmax([f32::NAN]), None);
/// let w: Vec<f64> = vec![0.5, -1.0];
/// assert_eq!(argmax(&w), Some(0));
/// ```
pub fn argmax<T: PartialOrd>(values: impl IntoIterator<Item = T>) -> Option<usize> {
    let mut best: Option<(usize, T)> = None;
    for (i, x) in values.into_iter().enumerate() {
        // Only NaN is unordered against itself.
        if x.partial_cmp(&x).is_none() {
            continue;
        }
        if best.as_ref().is_none_or(|(_, b)| x > *b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_index_on_ties_and_nan_never_wins() {
        assert_eq!(argmax([2.0_f32, 5.0, 5.0, 1.0]), Some(1));
        assert_eq!(argmax([f32::NAN, -1.0, f32::NAN, -0.5]), Some(3));
        assert_eq!(argmax([f32::NEG_INFINITY, f32::NEG_INFINITY]), Some(0));
        assert_eq!(argmax([f32::NAN, f32::NAN]), None);
        assert_eq!(argmax(Vec::<f32>::new()), None);
        let w: Vec<f64> = vec![1.0, 7.0, 7.0];
        assert_eq!(argmax(&w), Some(1));
    }
}
