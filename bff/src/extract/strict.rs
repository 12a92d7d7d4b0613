//! A deserializer over a parsed JSON value that holds objects to be objects.
//!
//! serde's derived struct visitors also accept a sequence (fields in declaration order), so
//! `serde_json::from_value` takes `{"preferences": []}` for a struct-typed `preferences`: a body
//! the OpenAPI document calls invalid would be accepted and would change something. Here a
//! struct is read from a JSON object only, at every depth; everything else is what serde_json
//! does.

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Deserializes `T` from `value`, refusing a JSON array wherever `T` expects a struct.
pub fn from_value<T: de::DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Strict(value))
}

struct Strict(Value);

macro_rules! leaves {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Strict {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(StrictMap::new(map)),
            Value::Array(items) => visitor.visit_seq(StrictSeq(items.into_iter())),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(StrictMap::new(map)),
            Value::Array(_) => Err(de::Error::invalid_type(de::Unexpected::Seq, &"a JSON object")),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Strict(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(StrictSeq(items.into_iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(StrictMap::new(map)),
            other => other.deserialize_map(visitor),
        }
    }

    // An enum's content is read as serde_json reads it: the DTOs' enums are names (strings).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    // What holds no value inside is read by serde_json itself, so that its checks stay: number
    // ranges, and names (fields, variants) that are strings only, where serde alone would also
    // take a variant's index (`{"status": 0}` for an internally tagged enum's first variant).
    leaves! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier deserialize_ignored_any
    }
}

struct StrictSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for StrictSeq {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error> {
        self.0.next().map(|item| seed.deserialize(Strict(item))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct StrictMap {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl StrictMap {
    fn new(map: Map<String, Value>) -> Self {
        StrictMap {
            entries: map.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for StrictMap {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(key.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a map value was read before its key"))?;
        seed.deserialize(Strict(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::from_value;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Preferences {
        #[serde(default)]
        email: bool,
        #[serde(default)]
        language: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    enum Tier {
        Gold,
        Silver,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Update {
        name: Option<String>,
        preferences: Option<Preferences>,
        lines: Vec<Line>,
        tier: Option<Tier>,
        #[serde(default)]
        quantity: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
    enum Transition {
        Shipped { carrier: String },
        Delivered {},
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Line {
        sku: String,
    }

    #[test]
    fn reads_what_serde_json_reads_from_objects() {
        let update: Update = from_value(json!({
            "name": "Ada",
            "preferences": {"email": true},
            "lines": [{"sku": "a"}, {"sku": "b"}],
            "tier": "gold",
            "quantity": 7
        }))
        .unwrap();
        assert_eq!(
            update,
            Update {
                name: Some("Ada".into()),
                preferences: Some(Preferences {
                    email: true,
                    language: String::new()
                }),
                lines: vec![Line { sku: "a".into() }, Line { sku: "b".into() }],
                tier: Some(Tier::Gold),
                quantity: 7,
            }
        );
    }

    #[test]
    fn refuses_an_array_where_a_struct_is_expected() {
        // serde_json itself takes this: a derived struct visitor reads a sequence, and fields with
        // defaults may be missing from it.
        assert!(serde_json::from_value::<Update>(json!({"preferences": [], "lines": []})).is_ok());
        let error = from_value::<Update>(json!({"preferences": [], "lines": []})).unwrap_err();
        assert!(error.to_string().contains("expected a JSON object"), "{error}");
        assert!(from_value::<Update>(json!({"lines": [["a"]]})).is_err());
        assert!(from_value::<Update>(json!([null, null, [], null, 0])).is_err());
    }

    #[test]
    fn names_a_variant_by_its_name_only() {
        // serde would take a variant's index; serde_json's own reader refuses it, and so must this.
        assert!(from_value::<Transition>(json!({"status": 0, "carrier": "DHL"})).is_err());
        assert!(from_value::<Transition>(json!({"status": 1})).is_err());
        assert_eq!(
            from_value::<Transition>(json!({"status": "shipped", "carrier": "DHL"})).unwrap(),
            Transition::Shipped { carrier: "DHL".into() }
        );
        assert_eq!(
            from_value::<Transition>(json!({"status": "delivered"})).unwrap(),
            Transition::Delivered {}
        );
    }

    #[test]
    fn keeps_serde_jsons_checks() {
        assert!(from_value::<Update>(json!({"lines": [], "quantity": -1})).is_err());
        assert!(from_value::<Update>(json!({"lines": [], "quantity": 4_294_967_296u64})).is_err());
        let silver: Update = from_value(json!({"lines": [], "tier": "silver"})).unwrap();
        assert_eq!(silver.tier, Some(Tier::Silver));
        assert!(from_value::<Update>(json!({"lines": [], "tier": "bronze"})).is_err());
        assert!(from_value::<Update>(json!({"lines": [], "extra": 1})).is_err());
        assert!(from_value::<Update>(json!({"lines": {}})).is_err());
    }
}
