//! CQL column types and their native-protocol value encodings, as far as the
//! test node needs them: the types of `schema.cql` (`text`, `bigint`,
//! `boolean`) plus the ones the driver reads from the system tables at connect.
//!
//! Values stay in their wire encoding everywhere in the node; this module turns
//! Rust values into those bytes, checks bound values against their column type,
//! and describes types to the driver (`ColTypeOption`) and to `system_schema`.

use std::net::IpAddr;

use cassandra_protocol::frame::message_result::{ColType, ColTypeOption, ColTypeOptionValue};

/// A column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CqlType {
    Text,
    Bigint,
    Int,
    Boolean,
    Uuid,
    Inet,
    Blob,
    List(Box<CqlType>),
    Set(Box<CqlType>),
    Map(Box<CqlType>, Box<CqlType>),
}

impl CqlType {
    /// The type for a simple CQL type name (`varchar` is `text`).
    pub fn from_name(name: &str) -> Option<CqlType> {
        Some(match name {
            "text" | "varchar" => CqlType::Text,
            "bigint" => CqlType::Bigint,
            "int" => CqlType::Int,
            "boolean" => CqlType::Boolean,
            "uuid" => CqlType::Uuid,
            "inet" => CqlType::Inet,
            "blob" => CqlType::Blob,
            _ => return None,
        })
    }

    /// The type as CQL writes it (what `system_schema.columns.type` holds).
    pub fn cql_name(&self) -> String {
        match self {
            CqlType::Text => "text".into(),
            CqlType::Bigint => "bigint".into(),
            CqlType::Int => "int".into(),
            CqlType::Boolean => "boolean".into(),
            CqlType::Uuid => "uuid".into(),
            CqlType::Inet => "inet".into(),
            CqlType::Blob => "blob".into(),
            CqlType::List(e) => format!("list<{}>", e.cql_name()),
            CqlType::Set(e) => format!("set<{}>", e.cql_name()),
            CqlType::Map(k, v) => format!("map<{}, {}>", k.cql_name(), v.cql_name()),
        }
    }

    /// The type as result and variable metadata describe it.
    pub fn option(&self) -> ColTypeOption {
        let simple = |id| ColTypeOption { id, value: None };
        match self {
            CqlType::Text => simple(ColType::Varchar),
            CqlType::Bigint => simple(ColType::Bigint),
            CqlType::Int => simple(ColType::Int),
            CqlType::Boolean => simple(ColType::Boolean),
            CqlType::Uuid => simple(ColType::Uuid),
            CqlType::Inet => simple(ColType::Inet),
            CqlType::Blob => simple(ColType::Blob),
            CqlType::List(e) => ColTypeOption {
                id: ColType::List,
                value: Some(ColTypeOptionValue::CList(Box::new(e.option()))),
            },
            CqlType::Set(e) => ColTypeOption {
                id: ColType::Set,
                value: Some(ColTypeOptionValue::CSet(Box::new(e.option()))),
            },
            CqlType::Map(k, v) => ColTypeOption {
                id: ColType::Map,
                value: Some(ColTypeOptionValue::CMap(
                    Box::new(k.option()),
                    Box::new(v.option()),
                )),
            },
        }
    }

    /// Checks that `bytes` is a valid encoding of this type, as Cassandra does
    /// before it stores a bound value.
    pub fn validate(&self, bytes: &[u8]) -> Result<(), String> {
        let fixed = |len: usize| {
            if bytes.len() == len {
                Ok(())
            } else {
                Err(format!(
                    "expected {len} bytes for a {} value, got {}",
                    self.cql_name(),
                    bytes.len()
                ))
            }
        };
        match self {
            CqlType::Text => std::str::from_utf8(bytes)
                .map(drop)
                .map_err(|_| "text value is not valid UTF-8".to_owned()),
            CqlType::Bigint => fixed(8),
            CqlType::Int => fixed(4),
            CqlType::Boolean => fixed(1),
            CqlType::Uuid => fixed(16),
            CqlType::Inet if bytes.len() == 4 || bytes.len() == 16 => Ok(()),
            CqlType::Inet => Err(format!(
                "expected 4 or 16 bytes for an inet value, got {}",
                bytes.len()
            )),
            CqlType::Blob => Ok(()),
            CqlType::List(e) | CqlType::Set(e) => {
                for item in decode_collection(bytes)? {
                    e.validate(&item)?;
                }
                Ok(())
            }
            CqlType::Map(k, v) => {
                let items = decode_map(bytes)?;
                for pair in items.chunks(2) {
                    k.validate(&pair[0])?;
                    v.validate(&pair[1])?;
                }
                Ok(())
            }
        }
    }
}

pub fn text(value: &str) -> Vec<u8> {
    value.as_bytes().to_vec()
}

pub fn bigint(value: i64) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

pub fn int(value: i32) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

pub fn boolean(value: bool) -> Vec<u8> {
    vec![u8::from(value)]
}

pub fn uuid(value: u128) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

pub fn inet(value: IpAddr) -> Vec<u8> {
    match value {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// A list or set: `[int n]` then each element as `[int length][bytes]`.
pub fn collection(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(items.len() as i32).to_be_bytes());
    for item in items {
        out.extend_from_slice(&(item.len() as i32).to_be_bytes());
        out.extend_from_slice(item);
    }
    out
}

/// A map: `[int n]` then key and value of each entry, each `[int length][bytes]`.
pub fn map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(entries.len() as i32).to_be_bytes());
    for (key, value) in entries {
        for part in [key, value] {
            out.extend_from_slice(&(part.len() as i32).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// The elements of an encoded list or set.
pub fn decode_collection(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    decode_elements(bytes, 1)
}

/// Keys and values of an encoded map, alternating.
pub fn decode_map(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    decode_elements(bytes, 2)
}

/// `[int n]` then `n × per_entry` elements, each `[int length][bytes]`.
fn decode_elements(bytes: &[u8], per_entry: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut rest = bytes;
    let count = take_int(&mut rest)?;
    let count = usize::try_from(count).map_err(|_| format!("negative collection size {count}"))?;
    let mut items = Vec::new();
    for _ in 0..count * per_entry {
        let len = take_int(&mut rest)?;
        let len = usize::try_from(len).map_err(|_| "null inside a collection".to_owned())?;
        if rest.len() < len {
            return Err("collection element runs past the value".into());
        }
        let (item, tail) = rest.split_at(len);
        items.push(item.to_vec());
        rest = tail;
    }
    if !rest.is_empty() {
        return Err("trailing bytes after a collection".into());
    }
    Ok(items)
}

fn take_int(rest: &mut &[u8]) -> Result<i32, String> {
    if rest.len() < 4 {
        return Err("truncated collection".into());
    }
    let (head, tail) = rest.split_at(4);
    *rest = tail;
    Ok(i32::from_be_bytes([head[0], head[1], head[2], head[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_round_trip_and_validate() {
        let list = collection(&[text("a"), text("bc")]);
        assert_eq!(decode_collection(&list).unwrap(), [text("a"), text("bc")]);
        assert!(
            CqlType::List(Box::new(CqlType::Text))
                .validate(&list)
                .is_ok()
        );
        assert!(
            CqlType::List(Box::new(CqlType::Bigint))
                .validate(&list)
                .is_err()
        );
        let m = map(&[(text("class"), text("SimpleStrategy"))]);
        assert!(
            CqlType::Map(Box::new(CqlType::Text), Box::new(CqlType::Text))
                .validate(&m)
                .is_ok()
        );
        assert!(decode_collection(&list[..list.len() - 1]).is_err());
    }

    #[test]
    fn scalar_values_are_checked() {
        assert!(CqlType::Bigint.validate(&bigint(5)).is_ok());
        assert!(CqlType::Bigint.validate(&int(5)).is_err());
        assert!(CqlType::Text.validate(&[0xff, 0xfe]).is_err());
        assert!(CqlType::Boolean.validate(&boolean(true)).is_ok());
        assert!(CqlType::Boolean.validate(&bigint(1)).is_err());
    }
}
