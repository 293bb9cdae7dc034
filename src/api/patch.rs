//! Helpers for PATCH bodies and nested JSON documents: telling "absent" from "null", merging a
//! partial document over the stored one (RFC 7396), and typing a JSON value with every error
//! recorded under its full field path.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::validation::Violations;

/// For `#[serde(default, deserialize_with = "nullable")]`: `None` when the field is absent,
/// `Some(None)` when it is `null`, `Some(Some(v))` otherwise.
pub fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// Reads a PATCH field that may be absent but must not be `null` (a required field cannot be
/// cleared). Answers the new value, if one was given.
pub fn not_null<T>(field: &str, value: Option<Option<T>>, v: &mut Violations) -> Option<T> {
    match value {
        Some(None) => {
            v.add(field, "cannot be null");
            None
        }
        Some(Some(value)) => Some(value),
        None => None,
    }
}

/// How many times an update is applied again when another one landed between its read and write.
const UPDATE_ROUNDS: usize = 3;

/// Runs `round` (read, apply, write conditional on the `updated_at` it read) until its write
/// lands. A conditional write finds nothing when another update landed in between; the change
/// is then applied again to the newer row, so two PATCHes never silently overwrite each other.
/// `round` answers `Some` once its write landed.
pub async fn update_until_stored<T, F>(
    what: &str,
    mut round: impl FnMut() -> F,
) -> Result<T, super::error::ApiError>
where
    F: std::future::Future<Output = Result<Option<T>, super::error::ApiError>>,
{
    for _ in 0..UPDATE_ROUNDS {
        if let Some(done) = round().await? {
            return Ok(done);
        }
    }
    Err(super::error::ApiError::Conflict(format!(
        "The {what} is being updated concurrently; retry"
    )))
}

/// JSON Merge Patch (RFC 7396): objects merge key by key, `null` removes a key, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// A nested config's update: `patch` (RFC 7396) merged over `stored`, or `null` for the defaults,
/// read back as `T`; a failure is recorded under `field` and answers `None`.
pub fn merged<T: Serialize + DeserializeOwned>(
    field: &str,
    stored: &T,
    patch: Option<&Value>,
    v: &mut Violations,
) -> Option<T> {
    let doc = match patch {
        Some(patch) => {
            let mut doc = serde_json::to_value(stored).expect("plain structs serialise");
            merge_patch(&mut doc, patch);
            doc
        }
        None => Value::Object(Default::default()),
    };
    typed(field, doc, v)
}

/// Deserialises `value` into `T`, recording a failure under `field` plus the inner path.
pub fn typed<T: DeserializeOwned>(field: &str, value: Value, v: &mut Violations) -> Option<T> {
    match serde_path_to_error::deserialize(value) {
        Ok(typed) => Some(typed),
        Err(err) => {
            let inner = err.path().to_string();
            let at = if inner == "." {
                field.to_owned()
            } else {
                format!("{field}.{inner}")
            };
            v.add(at, err.into_inner().to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4});
        merge_patch(
            &mut doc,
            &json!({"a": 9, "b": {"c": null, "x": 1}, "e": null}),
        );
        assert_eq!(doc, json!({"a": 9, "b": {"d": 3, "x": 1}}));
        merge_patch(&mut doc, &json!([1]));
        assert_eq!(doc, json!([1]));
    }

    #[test]
    fn typed_errors_carry_the_full_path() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct S {
            n: u32,
        }
        let mut v = Violations::new();
        assert!(typed::<S>("outer", json!({"n": "x"}), &mut v).is_none());
        let errors = v.into_result().unwrap_err();
        assert_eq!(errors[0].field, "outer.n");
    }
}
