//! Label and field selectors as the `labelSelector` and `fieldSelector`
//! query parameters carry them, parsed once per request and matched
//! against JSON objects.
//!
//! Labels: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
//! comma-separated (all must hold). Fields: `path=v`, `path==v`, `path!=v`
//! on the fields Kubernetes allows for the kind (`metadata.name`,
//! `metadata.namespace`, `spec.nodeName`, `status.phase`,
//! `involvedObject.*`, ...); any other field is a 400, as upstream.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

/// A parsed label selector (empty matches everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelReq>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Why a selector does not parse (the messages are upstream's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("set values must be in parentheses: {0:?}")]
    SetValues(String),
    #[error("unable to parse requirement: {0:?}")]
    Requirement(String),
    #[error("invalid selector: {0:?}; can't understand it")]
    Field(String),
    #[error("field label not supported: {field} (for {kind})")]
    UnsupportedField { field: String, kind: String },
}

fn set_values(s: &str) -> Result<Vec<String>, SelectorError> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| SelectorError::SetValues(s.to_string()))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(k) = part.strip_prefix('!') {
                LabelReq::Absent(k.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelReq::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                LabelReq::NotIn(k.trim().into(), set_values(v)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                LabelReq::In(k.trim().into(), set_values(v)?)
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                LabelReq::Exists(part.to_string())
            } else {
                return Err(SelectorError::Requirement(part.to_string()));
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            LabelReq::Ne(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::Absent(k) => !labels.contains_key(k),
        })
    }

    /// Matches the `metadata.labels` of a JSON object.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.is_empty() || self.matches(&labels_of(obj))
    }
}

/// The labels of a JSON object.
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Does a metav1.LabelSelector (matchLabels, matchExpressions) select
/// `labels`? An empty selector selects everything, as upstream.
pub fn label_selector_matches(sel: &Value, labels: &BTreeMap<String, String>) -> bool {
    selector_matches_with(sel, |k| labels.get(k).map(String::as_str))
}

/// [`label_selector_matches`] on an object's own labels, read in place
/// (no copy of the label map: the controllers run it over every pod of a
/// ReplicaSet on each reconcile).
pub fn selector_matches_object(sel: &Value, obj: &Value) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    selector_matches_with(sel, |k| {
        labels.and_then(|m| m.get(k)).and_then(Value::as_str)
    })
}

fn selector_matches_with<'a>(sel: &Value, get: impl Fn(&str) -> Option<&'a str>) -> bool {
    let by_labels = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| get(k) == v.as_str()));
    let exprs = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    by_labels
        && exprs.iter().all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let values = e.get("values").and_then(Value::as_array);
            let has = |g: &str| values.is_some_and(|v| v.iter().any(|x| x.as_str() == Some(g)));
            let got = get(key);
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => got.is_some_and(has),
                Some("NotIn") => got.is_none_or(|g| !has(g)),
                Some("Exists") => got.is_some(),
                Some("DoesNotExist") => got.is_none(),
                _ => false,
            }
        })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldReq {
    field: String,
    value: String,
    equal: bool,
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<FieldReq>);

/// The fields a kind can be selected by (besides metadata.name and
/// metadata.namespace, which every kind has).
fn selectable(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Secret" => &["type"],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "ReplicaSet" | "Deployment" | "StatefulSet" => &["status.replicas"],
        "Job" => &["status.successful"],
        _ => &[],
    }
}

impl FieldSelector {
    pub fn parse(kind: &str, s: &str) -> Result<FieldSelector, SelectorError> {
        let mut reqs = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(SelectorError::Field(part.to_string()));
            };
            let field = field.trim();
            let known = matches!(field, "metadata.name" | "metadata.namespace")
                || selectable(kind).contains(&field);
            if !known {
                return Err(SelectorError::UnsupportedField {
                    field: field.to_string(),
                    kind: kind.to_string(),
                });
            }
            reqs.push(FieldReq {
                field: field.to_string(),
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(FieldSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0
            .iter()
            .all(|r| (field_value(obj, &r.field) == r.value) == r.equal)
    }

    /// The single `metadata.name=x` this selector pins, if it does (lets a
    /// list skip the scan).
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.equal && r.field == "metadata.name")
            .map(|r| r.value.as_str())
    }
}

/// A field as a selector sees it: strings as they are, other scalars in
/// their JSON text, absent as "" (events' `source` is
/// `source.component`).
fn field_value(obj: &Value, field: &str) -> String {
    let field = if field == "source" {
        "source.component"
    } else {
        field
    };
    let pointer = format!("/{}", field.replace('.', "/"));
    match obj.pointer(&pointer) {
        None | Some(Value::Null) => {
            // Unset booleans select as "false", as upstream's conversion.
            if field == "spec.unschedulable" || field == "spec.hostNetwork" {
                "false".into()
            } else {
                String::new()
            }
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_of_every_form() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let yes = [
            "",
            "app=web",
            "app==web",
            "app=web,tier=front",
            "app!=db",
            "app in (web,db)",
            "env notin (prod)",
            "app",
            "!env",
            "app in (web), tier",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        let no = [
            "app=db",
            "app!=web",
            "app in (db)",
            "tier notin (front)",
            "env",
            "!app",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b c").is_err());
    }

    #[test]
    fn field_selectors_are_limited_to_upstream_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"},
                         "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let ok = |s: &str| FieldSelector::parse("Pod", s).unwrap().matches(&pod);
        assert!(ok("metadata.name=p"));
        assert!(ok("spec.nodeName=n1,status.phase!=Pending"));
        assert!(!ok("spec.nodeName="));
        assert!(ok("metadata.namespace==default"));
        let err = FieldSelector::parse("Pod", "spec.containers=x").unwrap_err();
        assert!(
            matches!(err, SelectorError::UnsupportedField { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("field label not supported"),
            "{err}"
        );
        assert!(FieldSelector::parse("ConfigMap", "spec.nodeName=x").is_err());
        assert_eq!(
            FieldSelector::parse("Pod", "metadata.name=p")
                .unwrap()
                .name(),
            Some("p")
        );
        // An unscheduled pod has spec.nodeName "".
        let pending = json!({"metadata": {"name": "q"}, "spec": {}});
        assert!(FieldSelector::parse("Pod", "spec.nodeName=")
            .unwrap()
            .matches(&pending));
    }

    #[test]
    fn describe_finds_events_by_involved_object() {
        let ev = json!({"metadata": {"name": "e"},
            "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default", "uid": "u1"}});
        let s = "involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Deployment,involvedObject.uid=u1";
        assert!(FieldSelector::parse("Event", s).unwrap().matches(&ev));
        let s = "involvedObject.name=web,involvedObject.uid=u2";
        assert!(!FieldSelector::parse("Event", s).unwrap().matches(&ev));
    }

    #[test]
    fn metav1_label_selectors() {
        let l = labels(&[("app", "web")]);
        assert!(label_selector_matches(
            &json!({"matchLabels": {"app": "web"}}),
            &l
        ));
        assert!(!label_selector_matches(
            &json!({"matchLabels": {"app": "db"}}),
            &l
        ));
        let e = json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]});
        assert!(label_selector_matches(&e, &l));
        let e = json!({"matchExpressions": [{"key": "app", "operator": "Bogus"}]});
        assert!(!label_selector_matches(&e, &l));
        assert!(label_selector_matches(&json!({}), &l));
    }
}
