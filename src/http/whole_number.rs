//! Whole numbers in request bodies as JSON Schema defines them: `40.0` is an integer there (a
//! number with no fraction), so a client that writes it, as the OpenAPI document allows, is
//! not refused. A fraction, or a value out of the type's range, is still an error.

use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::Number;

/// `n` as an `i64` when it is a whole number in range.
fn to_i64(n: &Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f < i64::MAX as f64)
            .map(|f| f as i64)
    })
}

/// `n` as a `u64` when it is a whole number in range.
fn to_u64(n: &Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f as u64)
    })
}

fn not_whole<E: Error>(n: &Number) -> E {
    E::custom(format!("{n} is not a whole number in range"))
}

/// A `u64` field.
pub fn u64_field<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = Number::deserialize(d)?;
    to_u64(&n).ok_or_else(|| not_whole(&n))
}

/// A list of `i64`.
pub fn i64_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    Vec::<Number>::deserialize(d)?
        .iter()
        .map(|n| to_i64(n).ok_or_else(|| not_whole(n)))
        .collect()
}

/// An optional list of `i64` (`null` or absent is `None`).
pub fn optional_i64_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    Option::<Vec<Number>>::deserialize(d)?
        .map(|list| {
            list.iter()
                .map(|n| to_i64(n).ok_or_else(|| not_whole(n)))
                .collect()
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "u64_field")]
        k: u64,
        #[serde(deserialize_with = "i64_list")]
        ids: Vec<i64>,
        #[serde(default, deserialize_with = "optional_i64_list")]
        more: Option<Vec<i64>>,
    }

    fn parse(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn whole_numbers_written_with_a_point_are_integers() {
        let b = parse(r#"{"k": 40.0, "ids": [1, 2.0, -3.0], "more": [5.0]}"#).unwrap();
        assert_eq!((b.k, b.ids, b.more), (40, vec![1, 2, -3], Some(vec![5])));
        let b = parse(r#"{"k": 3, "ids": [], "more": null}"#).unwrap();
        assert_eq!((b.k, b.more), (3, None));
        assert_eq!(parse(r#"{"k": 3, "ids": []}"#).unwrap().more, None);
        // Exact only with serde_json's `float_roundtrip` parser (without it this read as …58.5).
        let b = parse(r#"{"k": 1, "ids": [3802769585293958.0]}"#).unwrap();
        assert_eq!(b.ids, [3_802_769_585_293_958]);
    }

    #[test]
    fn fractions_negative_counts_and_huge_values_are_refused() {
        assert!(parse(r#"{"k": 40.5, "ids": []}"#).is_err());
        assert!(parse(r#"{"k": -1, "ids": []}"#).is_err());
        assert!(parse(r#"{"k": 1, "ids": [1.5]}"#).is_err());
        assert!(parse(r#"{"k": 1, "ids": [1e300]}"#).is_err());
        assert!(parse(r#"{"k": 1, "ids": ["7"]}"#).is_err());
        assert!(parse(r#"{"k": 1e30, "ids": []}"#).is_err());
    }
}
