//! JSON parsing with a nesting limit.
//!
//! serde_json refuses more than 127 levels of nesting, but the bus wraps a client's status up to
//! [`crate::bus::ENVELOPE_DEPTH`] levels deeper: a status the edge accepted at serde_json's own limit
//! could not be decoded by the router or the receiving edge, and its event would be lost (the client
//! would join without being announced). So client messages are parsed with a limit of our own, well
//! below serde_json's, counted while parsing: the first problem met reading left to right wins, as in
//! any streaming parser (a syntax error before the limit is reached is `invalid message`).

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a text is not a JSON value we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON (or trailing characters after the value).
    Syntax,
    /// Objects and arrays nested deeper than the limit.
    TooDeep,
}

/// The nesting depth of a JSON value: 0 for a scalar, 1 for `{}` or `[1]`, 2 for `{"a":{}}`.
pub fn depth(value: &Value) -> usize {
    // Iterative, so that measuring a value never recurses however deep it is.
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, level)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level);
                stack.extend(items.iter().map(|v| (v, level + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(level);
                stack.extend(map.values().map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Parses `text` as one JSON value whose objects and arrays nest at most `max_depth` deep (the
/// outermost counts as one, see [`depth`]).
pub fn parse(text: &str, max_depth: usize) -> Result<Value, ParseError> {
    let too_deep = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let seed = Limited {
        containers_left: max_depth,
        too_deep: &too_deep,
    };
    let value = seed.deserialize(&mut deserializer).and_then(|value| {
        deserializer.end()?;
        Ok(value)
    });
    match value {
        Ok(value) => Ok(value),
        Err(_) if too_deep.get() => Err(ParseError::TooDeep),
        Err(_) => Err(ParseError::Syntax),
    }
}

/// Builds a [`Value`] exactly as serde_json's own visitor does, refusing to open more than
/// `containers_left` nested objects or arrays. The flag tells our refusal apart from syntax errors.
#[derive(Clone, Copy)]
struct Limited<'a> {
    containers_left: usize,
    too_deep: &'a Cell<bool>,
}

impl<'a> Limited<'a> {
    /// The seed for the values inside a container, or the refusal if there is no room for one.
    fn enter<E: de::Error>(self) -> Result<Limited<'a>, E> {
        match self.containers_left.checked_sub(1) {
            Some(containers_left) => Ok(Limited {
                containers_left,
                ..self
            }),
            None => {
                self.too_deep.set(true);
                Err(E::custom("nested too deeply"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Limited<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Limited<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json's parser never yields a non-finite float; its own visitor maps one to null.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // A repeated key keeps its last value, as serde_json's `Value` does.
            let value = map.next_value_seed(inner)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_counts_containers_the_outermost_included() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"event": "ping"})), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": {}}], "c": {}})), 4);
    }

    #[test]
    fn the_limit_is_inclusive() {
        for limit in [1, 2, 32, 124] {
            let fits = parse(&nested(limit), limit).unwrap();
            assert_eq!(depth(&fits), limit);
            assert_eq!(parse(&nested(limit + 1), limit), Err(ParseError::TooDeep));
        }
        assert_eq!(parse("7", 0), Ok(json!(7)));
        assert_eq!(parse("{}", 0), Err(ParseError::TooDeep));
    }

    #[test]
    fn values_are_those_serde_json_builds() {
        let text = r#"{"a":[1,-2,3.5,1e300,"x\u00e9",true,null,{}],"a":"last","big":18446744073709551615}"#;
        assert_eq!(
            parse(text, 8),
            Ok(serde_json::from_str::<Value>(text).unwrap())
        );
    }

    #[test]
    fn the_first_problem_read_wins() {
        assert_eq!(parse("", 4), Err(ParseError::Syntax));
        assert_eq!(parse("{} x", 4), Err(ParseError::Syntax));
        // Broken before the limit is reached: a syntax error.
        assert_eq!(parse("[[}]]]]]]", 4), Err(ParseError::Syntax));
        // The limit is passed before the text breaks: too deep.
        assert_eq!(parse("[[[[[[[[}", 4), Err(ParseError::TooDeep));
        // Brackets inside strings are text, not nesting.
        assert_eq!(parse(r#"["[[[[[[[[[["]"#, 1), Ok(json!(["[[[[[[[[[["])));
        // Far beyond serde_json's own limit, still our refusal and no stack overflow.
        assert_eq!(parse(&nested(100_000), 32), Err(ParseError::TooDeep));
    }
}
