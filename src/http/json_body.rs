//! Typed JSON bodies: a body is parsed once, by serde, into the request's own struct, and a body
//! that does not fit says which top-level field is at fault. serde_path_to_error tracks where a
//! value went wrong (`sequence[2]`); a missing, unknown or repeated field is named by serde's own
//! error, whose wording the tests below pin.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::error::Category;
use serde_path_to_error::Segment;

use super::ApiError;

/// Why a body could not be read into its struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON at all (a syntax error, a truncated body): a 400.
    Malformed(String),
    /// JSON, but not an object.
    NotAnObject,
    /// A required field is absent.
    Missing { field: String },
    /// A field the struct does not have.
    Unknown { field: String },
    /// A field given more than once.
    Duplicate { field: String },
    /// A field whose value has the wrong type or range: `at` is where (`k`, `sequence[2]`) and
    /// `problem` what serde found there.
    Value {
        field: String,
        at: String,
        problem: String,
    },
}

/// A field whose value has the wrong type or range (see [`BodyError::Value`]): each route words
/// its own answer.
pub struct BadValue {
    pub field: String,
    pub at: String,
    pub problem: String,
}

impl BodyError {
    /// The answer to a body that does not fit, for every kind but a bad value, which comes back
    /// as `Err` for the route to word; `expected` lists the route's fields for an unknown one.
    pub fn answer(self, expected: &str) -> Result<ApiError, BadValue> {
        Ok(match self {
            Self::Malformed(m) => ApiError::MalformedJson(m),
            Self::NotAnObject => ApiError::Validation {
                field: None,
                message: "the body must be a JSON object".into(),
            },
            Self::Missing { field } => {
                let message = format!("{field} is required");
                ApiError::invalid(field, message)
            }
            Self::Unknown { field } => {
                let message = format!("unknown field `{field}` (expected {expected})");
                ApiError::invalid(field, message)
            }
            Self::Duplicate { field } => {
                let message = format!("`{field}` is given more than once");
                ApiError::invalid(field, message)
            }
            Self::Value { field, at, problem } => return Err(BadValue { field, at, problem }),
        })
    }
}

/// Parses `body`, which must be one JSON object, into `T`. Structs that should refuse unknown
/// fields say so with `#[serde(deny_unknown_fields)]`; serde's derive refuses repeated ones.
pub fn parse_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, ObjectOnly<T>>(&mut de) {
        Ok(ObjectOnly(value)) => {
            de.end().map_err(|e| BodyError::Malformed(e.to_string()))?;
            Ok(value)
        }
        Err(e) => {
            let at = e.path().to_string();
            let field = e.path().iter().next().and_then(|s| match s {
                Segment::Map { key } => Some(key.clone()),
                _ => None,
            });
            Err(classify(e.into_inner(), field, at))
        }
    }
}

/// Sorts a serde_json error into a [`BodyError`].
fn classify(e: serde_json::Error, field: Option<String>, at: String) -> BodyError {
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => BodyError::Malformed(e.to_string()),
        Category::Data => {
            let problem = message_of(&e);
            if problem.ends_with(EXPECTED_OBJECT) {
                return BodyError::NotAnObject;
            }
            // serde's own wording for struct-level errors (`serde::de::Error`'s defaults).
            let named = |prefix: &str| {
                problem
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.split('`').next())
                    .map(str::to_owned)
            };
            if let Some(f) = named("missing field `") {
                BodyError::Missing { field: f }
            } else if let Some(f) = named("unknown field `") {
                BodyError::Unknown { field: f }
            } else if let Some(f) = named("duplicate field `") {
                BodyError::Duplicate { field: f }
            } else {
                BodyError::Value {
                    field: field.unwrap_or_default(),
                    at,
                    problem,
                }
            }
        }
    }
}

/// The error's message without serde_json's ` at line L column C`.
fn message_of(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&position).unwrap_or(&full).to_owned()
}

/// What [`ObjectOnly`] expects, and so how serde's message ends when a body is not an object.
const EXPECTED_OBJECT: &str = "expected a JSON object";

/// `T`, read from a JSON object only: serde's derived structs also accept an array of their
/// fields in order, which no client of a JSON API means.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = ObjectOnly<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED_OBJECT.trim_start_matches("expected "))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(ObjectOnly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        ids: Vec<i64>,
        #[serde(default)]
        n: Option<u32>,
    }

    fn err(body: &str) -> BodyError {
        parse_object::<Probe>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_fitting_object_parses() {
        let p: Probe = parse_object(br#" {"ids": [1, 2], "n": 3} "#).unwrap();
        assert_eq!(
            p,
            Probe {
                ids: vec![1, 2],
                n: Some(3)
            }
        );
    }

    #[test]
    fn each_misfit_names_its_field() {
        assert!(matches!(err("{"), BodyError::Malformed(_)));
        assert!(matches!(err(r#"{"ids": [1]} x"#), BodyError::Malformed(_)));
        assert!(matches!(err(""), BodyError::Malformed(_)));
        assert_eq!(err("[[1], 2]"), BodyError::NotAnObject);
        assert_eq!(err("[]"), BodyError::NotAnObject);
        assert_eq!(err("7"), BodyError::NotAnObject);
        assert_eq!(err("null"), BodyError::NotAnObject);
        assert_eq!(
            err(r#"{"n": 1}"#),
            BodyError::Missing {
                field: "ids".into()
            }
        );
        assert_eq!(
            err(r#"{"ids": [], "idz": 1}"#),
            BodyError::Unknown {
                field: "idz".into()
            }
        );
        assert_eq!(
            err(r#"{"ids": [1], "n": 1, "n": 2}"#),
            BodyError::Duplicate { field: "n".into() }
        );
        assert_eq!(
            err(r#"{"ids": [1], "ids": [2]}"#),
            BodyError::Duplicate {
                field: "ids".into()
            }
        );
        match err(r#"{"ids": [1, "2"]}"#) {
            BodyError::Value { field, at, problem } => {
                assert_eq!((field.as_str(), at.as_str()), ("ids", "ids[1]"));
                assert!(problem.contains("invalid type: string"), "{problem}");
                assert!(!problem.contains("line 1"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        match err(r#"{"ids": [], "n": -1}"#) {
            BodyError::Value { field, at, .. } => assert_eq!((field, at), ("n".into(), "n".into())),
            other => panic!("{other:?}"),
        }
    }
}
