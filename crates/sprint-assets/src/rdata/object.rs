//! The R values the reader produces: [`RObject`] (a value with its attributes) and
//! [`RValue`].

/// The integer NA of R (`NA_integer_`, also the logical NA).
pub const NA_INTEGER: i32 = i32::MIN;

/// An R value with its attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct RObject {
    /// The value.
    pub value: RValue,
    /// Attributes in stored order (`names`, `class`, `dim`, ...).
    pub attributes: Vec<(String, RObject)>,
}

/// The value part of an [`RObject`].
#[derive(Clone, Debug, PartialEq)]
pub enum RValue {
    /// `NULL`.
    Null,
    /// A symbol (name).
    Symbol(String),
    /// A pairlist, call or `...` list: `(tag, value)` pairs.
    Pairlist(Vec<(Option<String>, RObject)>),
    /// A logical vector: 0, 1 or [`NA_INTEGER`].
    Logical(Vec<i32>),
    /// An integer vector; NA is [`NA_INTEGER`].
    Integer(Vec<i32>),
    /// A double vector.
    Real(Vec<f64>),
    /// A complex vector as `(re, im)`.
    Complex(Vec<(f64, f64)>),
    /// A character vector; `None` is `NA_character_`.
    Character(Vec<Option<String>>),
    /// A generic vector (list) or expression vector.
    List(Vec<RObject>),
    /// A raw vector.
    Raw(Vec<u8>),
    /// Something read but not represented (environment, closure, namespace, external
    /// pointer, S4 object, builtin, ...), with R's name of its kind.
    Other(&'static str),
}

impl RObject {
    /// A value without attributes.
    pub(super) fn new(value: RValue) -> Self {
        RObject {
            value,
            attributes: Vec::new(),
        }
    }

    /// The attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&RObject> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The `names` attribute as strings (`NA` names become empty strings).
    pub fn names(&self) -> Option<Vec<String>> {
        match &self.attr("names")?.value {
            RValue::Character(v) => Some(v.iter().map(|s| s.clone().unwrap_or_default()).collect()),
            _ => None,
        }
    }

    /// The element of a named list (or the value of a tagged pairlist) called `name`.
    pub fn get(&self, name: &str) -> Option<&RObject> {
        match &self.value {
            RValue::List(items) => {
                let names = self.names()?;
                names
                    .iter()
                    .position(|n| n == name)
                    .and_then(|i| items.get(i))
            }
            RValue::Pairlist(items) => items
                .iter()
                .find(|(t, _)| t.as_deref() == Some(name))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Number of elements (0 for `NULL` and non-vectors).
    pub fn len(&self) -> usize {
        match &self.value {
            RValue::Null | RValue::Symbol(_) | RValue::Other(_) => 0,
            RValue::Pairlist(v) => v.len(),
            RValue::Logical(v) | RValue::Integer(v) => v.len(),
            RValue::Real(v) => v.len(),
            RValue::Complex(v) => v.len(),
            RValue::Character(v) => v.len(),
            RValue::List(v) => v.len(),
            RValue::Raw(v) => v.len(),
        }
    }

    /// True when [`RObject::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Numbers of an integer, logical or double vector as `f64` (NA as NaN).
    pub fn as_f64s(&self) -> Option<Vec<f64>> {
        match &self.value {
            RValue::Integer(v) | RValue::Logical(v) => Some(
                v.iter()
                    .map(|&x| if x == NA_INTEGER { f64::NAN } else { x as f64 })
                    .collect(),
            ),
            RValue::Real(v) => Some(v.clone()),
            _ => None,
        }
    }
}
