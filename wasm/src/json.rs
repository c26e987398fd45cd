//! Reading JSON with the JavaScript engine's own parser (`JSON.parse`, `Reflect.get`), so the
//! module carries no JSON parser of its own (serde_json, serde and the safetensors crate were
//! ~80 KB of it). Errors are plain text naming the field; the callers wrap them in the runtime's
//! error types.

use js_sys::{Array, Reflect, JSON};
use wasm_bindgen::{JsCast, JsValue};

/// A parsed JSON object, read field by field; `path` prefixes field names in errors (`encoder.`).
pub(crate) struct Obj {
    value: JsValue,
    path: String,
}

/// Parses `text`, which must hold a JSON object.
pub(crate) fn parse(text: &str) -> Result<Obj, String> {
    let value = JSON::parse(text).map_err(|e| {
        e.dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .unwrap_or_else(|| "invalid JSON".into())
    })?;
    Obj::new(value, String::new(), "the document")
}

/// A JSON number that is a non-negative integer below 2⁵³.
fn uint(v: &JsValue) -> Option<u64> {
    let x = v.as_f64()?;
    ((0.0..=9_007_199_254_740_991.0).contains(&x) && x == (x as u64) as f64).then_some(x as u64)
}

impl Obj {
    fn new(value: JsValue, path: String, what: &str) -> Result<Self, String> {
        if value.is_object() && !Array::is_array(&value) {
            Ok(Obj { value, path })
        } else {
            Err(format!("{what} is missing or not a JSON object"))
        }
    }

    fn get(&self, key: &str) -> JsValue {
        Reflect::get(&self.value, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    }

    fn bad(&self, key: &str, what: &str) -> String {
        format!("field `{}{key}` is missing or not {what}", self.path)
    }

    /// The object in field `key`; `None` when the field is absent or `null`.
    pub(crate) fn opt_obj(&self, key: &str) -> Result<Option<Obj>, String> {
        let v = self.get(key);
        if v.is_undefined() || v.is_null() {
            return Ok(None);
        }
        let path = format!("{}{key}.", self.path);
        Obj::new(v, path, &format!("field `{}{key}`", self.path)).map(Some)
    }

    /// The object in field `key`.
    pub(crate) fn obj(&self, key: &str) -> Result<Obj, String> {
        self.opt_obj(key)?
            .ok_or_else(|| self.bad(key, "a JSON object"))
    }

    /// The string in field `key`, if it holds one.
    pub(crate) fn opt_string(&self, key: &str) -> Option<String> {
        self.get(key).as_string()
    }

    /// The string in field `key`.
    pub(crate) fn string(&self, key: &str) -> Result<String, String> {
        self.opt_string(key)
            .ok_or_else(|| self.bad(key, "a string"))
    }

    /// The boolean in field `key`.
    pub(crate) fn boolean(&self, key: &str) -> Result<bool, String> {
        self.get(key)
            .as_bool()
            .ok_or_else(|| self.bad(key, "a boolean"))
    }

    /// The value in field `key` read by `read`; `None` when the field is absent or `null`, an
    /// error naming `what` was expected when `read` refuses it.
    fn opt_with<T>(
        &self,
        key: &str,
        what: &str,
        read: impl Fn(&JsValue) -> Option<T>,
    ) -> Result<Option<T>, String> {
        let v = self.get(key);
        if v.is_undefined() || v.is_null() {
            return Ok(None);
        }
        read(&v).map(Some).ok_or_else(|| self.bad(key, what))
    }

    /// The boolean in field `key`; `None` when the field is absent or `null`.
    pub(crate) fn opt_boolean(&self, key: &str) -> Result<Option<bool>, String> {
        self.opt_with(key, "a boolean", JsValue::as_bool)
    }

    /// The number in field `key`; `None` when the field is absent or `null`.
    pub(crate) fn opt_number(&self, key: &str) -> Result<Option<f64>, String> {
        self.opt_with(key, "a number", JsValue::as_f64)
    }

    /// The number in field `key`.
    pub(crate) fn number(&self, key: &str) -> Result<f64, String> {
        self.get(key)
            .as_f64()
            .ok_or_else(|| self.bad(key, "a number"))
    }

    /// The non-negative integer in field `key`; `None` when the field is absent or `null`.
    pub(crate) fn opt_uint(&self, key: &str) -> Result<Option<u64>, String> {
        self.opt_with(key, "a non-negative integer", uint)
    }

    /// The non-negative integer in field `key`.
    pub(crate) fn uint(&self, key: &str) -> Result<u64, String> {
        self.opt_uint(key)?
            .ok_or_else(|| self.bad(key, "a non-negative integer"))
    }

    /// The non-negative integer in field `key`, as a `usize`.
    pub(crate) fn usize(&self, key: &str) -> Result<usize, String> {
        usize::try_from(self.uint(key)?).map_err(|_| self.bad(key, "a usize"))
    }

    fn array<T>(
        &self,
        key: &str,
        what: &str,
        f: impl Fn(&JsValue) -> Option<T>,
    ) -> Result<Vec<T>, String> {
        let v = self.get(key);
        let arr = v.dyn_ref::<Array>().ok_or_else(|| self.bad(key, what))?;
        (0..arr.length())
            .map(|i| f(&arr.get(i)).ok_or_else(|| self.bad(key, what)))
            .collect()
    }

    /// The array of numbers in field `key`, as f32 (rounded to nearest, as serde_json does).
    pub(crate) fn floats(&self, key: &str) -> Result<Vec<f32>, String> {
        self.array(key, "an array of numbers", |v| v.as_f64().map(|x| x as f32))
    }

    /// The array of non-negative integers in field `key`, as `usize`.
    pub(crate) fn usizes(&self, key: &str) -> Result<Vec<usize>, String> {
        self.array(key, "an array of non-negative integers", |v| {
            uint(v).and_then(|x| usize::try_from(x).ok())
        })
    }
}
