//! A set of models with traffic weights, as `RECSYS_MODELS` and promotions write it:
//! `name:weight,name:weight` (a name alone weighs 1), and what a promotion makes of a set.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest model name accepted.
pub const MAX_NAME_CHARS: usize = 200;

/// One model of a served set and its weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// A checkpoint directory's name under the checkpoint root.
    pub name: String,
    /// Its share of the split's traffic, relative to the others' (0: only by name).
    pub weight: f64,
}

/// Why a set of models, or a promotion, is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("no model named (expected name:weight,name:weight, e.g. sasrec-a:0.9,ease-b:0.1)")]
    Empty,
    #[error(
        "`{0}` is not a model name: 1 to {MAX_NAME_CHARS} letters, digits, `.`, `_` or `-` \
         (a checkpoint directory's name, as `movierec models list` shows)"
    )]
    BadName(String),
    #[error("`{entry}`: the weight must be a number of at least 0, got `{weight}`")]
    BadWeight { entry: String, weight: String },
    #[error("model `{0}` is named twice")]
    Duplicate(String),
    #[error("every weight is 0: at least one model must take the split's traffic")]
    NoTraffic,
}

/// Checks that `name` can only name a directory directly under the checkpoint root.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.chars().all(allowed)
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(SpecError::BadName(name.to_owned()))
    }
}

/// Parses `name:weight,name:weight`.
pub fn parse(text: &str) -> Result<Vec<ModelSpec>, SpecError> {
    let mut specs: Vec<ModelSpec> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let (name, weight) = match entry.rsplit_once(':') {
            Some((name, raw)) => {
                let weight = raw
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|w| w.is_finite() && *w >= 0.0);
                let weight = weight.ok_or_else(|| SpecError::BadWeight {
                    entry: entry.to_owned(),
                    weight: raw.trim().to_owned(),
                })?;
                (name.trim(), weight)
            }
            None => (entry, 1.0),
        };
        check_name(name)?;
        if specs.iter().any(|s| s.name == name) {
            return Err(SpecError::Duplicate(name.to_owned()));
        }
        specs.push(ModelSpec {
            name: name.to_owned(),
            weight,
        });
    }
    check_set(&specs)?;
    Ok(specs)
}

/// Checks a whole set: not empty, some traffic.
pub fn check_set(specs: &[ModelSpec]) -> Result<(), SpecError> {
    if specs.is_empty() {
        return Err(SpecError::Empty);
    }
    if specs.iter().all(|s| s.weight <= 0.0) {
        return Err(SpecError::NoTraffic);
    }
    Ok(())
}

/// The set after promoting `name` to `weight` (a share from 0 to 1): the others keep their
/// proportions in the rest (`1 - weight`); a weight of 1 makes it the only model; a weight of 0
/// serves it by name only.
pub fn promoted(
    current: &[ModelSpec],
    name: &str,
    weight: f64,
) -> Result<Vec<ModelSpec>, SpecError> {
    check_name(name)?;
    if !(0.0..=1.0).contains(&weight) {
        return Err(SpecError::BadWeight {
            entry: name.to_owned(),
            weight: format!("{weight} (a share from 0 to 1)"),
        });
    }
    let mut set = vec![ModelSpec {
        name: name.to_owned(),
        weight,
    }];
    if weight < 1.0 {
        let others: Vec<&ModelSpec> = current.iter().filter(|s| s.name != name).collect();
        let sum: f64 = others.iter().map(|s| s.weight).sum();
        let scale = if sum > 0.0 { (1.0 - weight) / sum } else { 0.0 };
        set.extend(others.into_iter().map(|s| ModelSpec {
            name: s.name.clone(),
            weight: s.weight * scale,
        }));
    }
    check_set(&set)?;
    Ok(set)
}

/// The set as `RECSYS_MODELS` writes it.
pub struct Display<'a>(pub &'a [ModelSpec]);

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", s.name, s.weight)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, weight: f64) -> ModelSpec {
        ModelSpec {
            name: name.into(),
            weight,
        }
    }

    #[test]
    fn the_documented_form_parses() {
        assert_eq!(
            parse("sasrec-ml-100k-1:0.9, bert4rec-ml-100k-2:0.1").unwrap(),
            vec![
                spec("sasrec-ml-100k-1", 0.9),
                spec("bert4rec-ml-100k-2", 0.1)
            ]
        );
        assert_eq!(parse("a").unwrap(), vec![spec("a", 1.0)]);
        assert_eq!(
            parse("a:1,b:0").unwrap(),
            vec![spec("a", 1.0), spec("b", 0.0)]
        );
        let set = [spec("a", 0.9), spec("b", 0.1)];
        assert_eq!(parse(&Display(&set).to_string()).unwrap(), set);
    }

    #[test]
    fn bad_sets_are_refused_by_what_is_wrong() {
        assert_eq!(parse(""), Err(SpecError::Empty));
        assert_eq!(parse(" , "), Err(SpecError::Empty));
        assert_eq!(parse("../etc:1"), Err(SpecError::BadName("../etc".into())));
        assert_eq!(parse("a/b"), Err(SpecError::BadName("a/b".into())));
        assert_eq!(parse(".."), Err(SpecError::BadName("..".into())));
        assert!(matches!(parse("a:x"), Err(SpecError::BadWeight { .. })));
        assert!(matches!(parse("a:-1"), Err(SpecError::BadWeight { .. })));
        assert!(matches!(parse("a:inf"), Err(SpecError::BadWeight { .. })));
        assert_eq!(parse("a:1,a:2"), Err(SpecError::Duplicate("a".into())));
        assert_eq!(parse("a:0,b:0"), Err(SpecError::NoTraffic));
        assert!(check_name(&"x".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(check_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
    }

    /// Asserts the names in order and the weights to 1e-12.
    fn assert_set(got: &[ModelSpec], want: &[(&str, f64)]) {
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        let want_names: Vec<&str> = want.iter().map(|w| w.0).collect();
        assert_eq!(names, want_names);
        for (g, w) in got.iter().zip(want) {
            assert!((g.weight - w.1).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn promotion_keeps_the_others_in_proportion() {
        let now = [spec("a", 3.0), spec("b", 1.0)];
        assert_set(&promoted(&now, "c", 1.0).unwrap(), &[("c", 1.0)]);
        assert_set(
            &promoted(&now, "c", 0.2).unwrap(),
            &[("c", 0.2), ("a", 0.6), ("b", 0.2)],
        );
        // Promoting a member changes only its share.
        assert_set(
            &promoted(&now, "b", 0.5).unwrap(),
            &[("b", 0.5), ("a", 0.5)],
        );
        assert_set(
            &promoted(&now, "shadow", 0.0).unwrap(),
            &[("shadow", 0.0), ("a", 0.75), ("b", 0.25)],
        );
        assert_eq!(promoted(&[], "c", 0.0), Err(SpecError::NoTraffic));
        assert!(matches!(
            promoted(&now, "c", 1.5),
            Err(SpecError::BadWeight { .. })
        ));
        assert!(matches!(
            promoted(&now, "c", f64::NAN),
            Err(SpecError::BadWeight { .. })
        ));
    }
}
