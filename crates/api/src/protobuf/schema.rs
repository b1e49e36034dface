//! The schema table: message types, their fields and the top-level kinds, parsed once from k8s_proto_schema.txt.

use super::*;

// ---------------------------------------------------------------------------------------
// Schema table

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    String,
    Bool,
    Int32,
    Int64,
    Double,
    Bytes,
    Time,
    MicroTime,
    Duration,
    IntOrString,
    Quantity,
    RawJson,
    Message(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Label {
    Single,
    Repeated,
    Map,
    /// A Go struct embedded with `json:",inline"`: its fields go into the parent object.
    Inline,
}

#[derive(Debug)]
pub(super) struct Field {
    pub(super) num: u32,
    pub(super) json: &'static str,
    pub(super) label: Label,
    pub(super) ty: Ty,
}

#[derive(Debug)]
pub(super) struct Message {
    pub(super) name: &'static str,
    /// Sorted by `num`.
    pub(super) fields: Vec<Field>,
}

impl Message {
    pub(super) fn field(&self, num: u32) -> Option<&Field> {
        self.fields
            .binary_search_by_key(&num, |f| f.num)
            .ok()
            .map(|i| &self.fields[i])
    }
}

#[derive(Debug)]
pub(super) struct Kind {
    pub(super) api_version: &'static str,
    pub(super) kind: &'static str,
    pub(super) message: usize,
}

#[derive(Debug)]
pub(super) struct Schema {
    pub(super) messages: Vec<Message>,
    pub(super) kinds: Vec<Kind>,
}

impl Schema {
    pub(super) fn kind(&self, api_version: &str, kind: &str) -> Option<usize> {
        let exact = self
            .kinds
            .iter()
            .find(|k| k.api_version == api_version && k.kind == kind);
        exact
            .or_else(|| {
                self.kinds
                    .iter()
                    .find(|k| k.api_version == "*" && k.kind == kind)
            })
            .map(|k| k.message)
    }
}

pub(super) const SCHEMA_TEXT: &str = include_str!("../k8s_proto_schema.txt");

pub(super) fn schema() -> Result<&'static Schema, String> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| parse_schema(SCHEMA_TEXT))
        .as_ref()
        .map_err(|e| format!("internal error: bad protobuf schema table: {e}"))
}

pub(super) fn parse_schema(text: &'static str) -> Result<Schema, String> {
    let lines: Vec<(usize, &'static str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut index: HashMap<&'static str, usize> = HashMap::new();
    let mut messages = Vec::new();
    for &(n, line) in &lines {
        if line.starts_with('@') {
            continue;
        }
        let name = line.split_whitespace().next().unwrap_or_default();
        if index.insert(name, messages.len()).is_some() {
            return Err(format!("line {n}: duplicate message {name}"));
        }
        messages.push(Message {
            name,
            fields: Vec::new(),
        });
    }
    let mut kinds = Vec::new();
    for &(n, line) in &lines {
        let mut words = line.split_whitespace();
        if line.starts_with('@') {
            let (Some("@"), Some(api_version), Some(kind), Some(ty), None) = (
                words.next(),
                words.next(),
                words.next(),
                words.next(),
                words.next(),
            ) else {
                return Err(format!("line {n}: bad kind line"));
            };
            let message = *index
                .get(ty)
                .ok_or_else(|| format!("line {n}: unknown message {ty}"))?;
            kinds.push(Kind {
                api_version,
                kind,
                message,
            });
            continue;
        }
        let name = words.next().unwrap_or_default();
        let mut fields = Vec::new();
        for word in words {
            let mut parts = word.splitn(3, ':');
            let (Some(num), Some(json), Some(ty)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("line {n}: bad field {word:?}"));
            };
            let num: u32 = num
                .parse()
                .map_err(|_| format!("line {n}: bad field number in {word:?}"))?;
            let (mut label, ty) = if let Some(t) = ty.strip_prefix("[]") {
                (Label::Repeated, t)
            } else if let Some(t) = ty.strip_prefix("{}") {
                (Label::Map, t)
            } else {
                (Label::Single, ty)
            };
            let ty = match ty {
                "string" => Ty::String,
                "bool" => Ty::Bool,
                "int32" => Ty::Int32,
                "int64" => Ty::Int64,
                "double" => Ty::Double,
                "bytes" => Ty::Bytes,
                "time" => Ty::Time,
                "microtime" => Ty::MicroTime,
                "duration" => Ty::Duration,
                "intorstring" => Ty::IntOrString,
                "quantity" => Ty::Quantity,
                "rawjson" => Ty::RawJson,
                msg => Ty::Message(
                    *index
                        .get(msg)
                        .ok_or_else(|| format!("line {n}: unknown type {msg}"))?,
                ),
            };
            if json == "-" {
                if label != Label::Single || !matches!(ty, Ty::Message(_)) {
                    return Err(format!("line {n}: inline field {word:?} is not a message"));
                }
                label = Label::Inline;
            }
            if fields.last().is_some_and(|f: &Field| f.num >= num) || num == 0 {
                return Err(format!(
                    "line {n}: field numbers not increasing at {word:?}"
                ));
            }
            fields.push(Field {
                num,
                json,
                label,
                ty,
            });
        }
        messages[index[name]].fields = fields;
    }
    Ok(Schema { messages, kinds })
}
