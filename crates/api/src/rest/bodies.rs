//! Request bodies other than JSON: Kubernetes protobuf (Go zero values pruned) and YAML.

use super::*;

/// Fields whose values are user data (maps): Go's zero values inside
/// them are real values and stay.
pub(super) const MAP_FIELDS: &[&str] = &[
    "labels",
    "annotations",
    "data",
    "stringData",
    "binaryData",
    "matchLabels",
    "nodeSelector",
    "selector",
];

/// Drops the empty strings, `false`s and nulls a Go client writes for
/// every plain (non-pointer) field of a protobuf body, so that defaulting
/// sees them as unset, as it would in the JSON the same client sends
/// (where they are `omitempty`). Numbers stay: a zero replica count is
/// meaningful.
pub fn prune_go_zero_values(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, child| {
                MAP_FIELDS.contains(&k.as_str())
                    || !matches!(child, Value::Null | Value::Bool(false))
                        && child.as_str() != Some("")
            });
            for (k, child) in m.iter_mut() {
                if !MAP_FIELDS.contains(&k.as_str()) {
                    prune_go_zero_values(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(prune_go_zero_values),
        _ => {}
    }
}

/// A Kubernetes protobuf body (kubectl 1.33 sends its imperative creates
/// so) as the JSON the rest of the server works on.
pub(super) fn from_protobuf(body: &[u8]) -> ApiResult<Bytes> {
    let mut v = crate::protobuf::decode(body).map_err(|e| {
        ApiError::bad_request(format!("the protobuf body could not be decoded: {e}"))
    })?;
    prune_go_zero_values(&mut v);
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
}

/// A YAML body (Kubernetes accepts `application/yaml` for creates and
/// updates) as JSON.
pub(super) fn from_yaml(body: &[u8]) -> ApiResult<Bytes> {
    let v: Value = serde_saphyr::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: {e}"
        ))
    })?;
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
}

#[cfg(test)]
mod hostile {
    //! Hostile request bodies: arbitrary bytes and mutated real bodies
    //! (kubectl's protobuf creates, YAML manifests) are decoded or refused
    //! with a 400, never a panic; a YAML alias bomb is refused, not
    //! expanded.

    use proptest::prelude::*;

    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {app: web}\nspec:\n  containers:\n  - name: c\n    image: x\n    command: [sh, -c, 'echo hi']\n";

    fn protobuf_bodies() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/testdata");
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pb"))
            .map(|e| std::fs::read(e.path()).unwrap())
            .collect();
        out.sort();
        assert!(out.len() >= 5, "the committed kubectl bodies");
        out
    }

    #[test]
    fn a_yaml_alias_bomb_is_refused() {
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let mut prev = 'a';
        for name in 'b'..='j' {
            bomb.push_str(&format!(
                "{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
            prev = name;
        }
        let t = std::time::Instant::now();
        let e = from_yaml(bomb.as_bytes()).unwrap_err();
        assert_eq!(e.code, 400, "{}", e.message);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
        // Deep nesting is refused too, not a stack overflow.
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(from_yaml(deep.as_bytes()).unwrap_err().code, 400);
        assert!(from_yaml(MANIFEST.as_bytes()).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_yaml_never_panics(text in "\\PC{0,400}") {
            let _ = from_yaml(text.as_bytes());
        }

        #[test]
        fn mutated_yaml_never_panics(at in any::<usize>(), value in any::<u8>()) {
            let mut bytes = MANIFEST.as_bytes().to_vec();
            let i = at % bytes.len();
            bytes[i] = value;
            let _ = from_yaml(&bytes);
        }

        #[test]
        fn arbitrary_protobuf_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut body = b"k8s\0".to_vec();
            body.extend_from_slice(&bytes);
            let _ = crate::protobuf::decode(&body);
            let _ = crate::protobuf::decode(&bytes);
        }

        /// kubectl's real protobuf creates with one byte changed, or cut
        /// short: decoded or refused.
        #[test]
        fn mutated_protobuf_never_panics(which in any::<usize>(), at in any::<usize>(), value in any::<u8>(), cut in any::<bool>()) {
            let bodies = protobuf_bodies();
            let mut body = bodies[which % bodies.len()].clone();
            let i = at % body.len();
            if cut {
                body.truncate(i);
            } else {
                body[i] = value;
            }
            let _ = crate::protobuf::decode(&body);
        }
    }
}
