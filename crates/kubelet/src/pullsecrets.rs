//! A pod's `imagePullSecrets` made into registry logins: each Secret of
//! type `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`, an `auths`
//! map, what `kubectl create secret docker-registry` makes) or
//! `kubernetes.io/dockercfg` (`.dockercfg`, the map alone) gives one
//! [`RegistryAuth`] per registry it names. A runtime tries the logins of
//! an image's registry in order, as the kubelet does; the logins live
//! only in memory (`PodConfig`'s resolved part).

use std::collections::BTreeSet;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One registry login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    /// The registry as the Secret names it (`127.0.0.1:5055`,
    /// `https://index.docker.io/v1/`).
    pub server: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    /// Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Docker Hub, as an image without a registry host means it.
const DOCKER_HUB: &str = "docker.io";

/// The registry host of an image reference: its first path component when
/// that looks like a host (has `.` or `:`, or is `localhost`), else
/// Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => DOCKER_HUB,
    }
}

/// The host a Secret's registry key names (`https://host/v1/` → `host`;
/// Docker Hub's aliases → `docker.io`).
fn host_of(server: &str) -> &str {
    let s = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB,
        h => h,
    }
}

impl RegistryAuth {
    /// Whether this login is for `image`'s registry.
    pub fn matches(&self, image: &str) -> bool {
        host_of(&self.server) == registry_of(image)
    }
}

/// The Secrets a pod's `imagePullSecrets` name, as (`Secret`, name).
pub fn referenced(pod: &Value) -> BTreeSet<(&'static str, String)> {
    pod.pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("name")?.as_str())
        .filter(|n| !n.is_empty())
        .map(|n| ("Secret", n.to_string()))
        .collect()
}

/// The logins of `pod`'s pull secrets, in the order the pod names them,
/// from the Secrets read (`objects`; a missing one gives none, as
/// upstream, which pulls without it). Returns the logins and what was
/// wrong with the Secrets that gave none.
pub fn resolve(pod: &Value, objects: &crate::volumes::Objects) -> (Vec<RegistryAuth>, Vec<String>) {
    let mut auths = Vec::new();
    let mut problems = Vec::new();
    let names = pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("name")?.as_str());
    for name in names {
        match objects.get(&("Secret", name.to_string())) {
            Some(Some(secret)) => match logins(secret) {
                Ok(found) => auths.extend(found),
                Err(why) => problems.push(format!("Secret {name:?}: {why}")),
            },
            _ => problems.push(format!("Secret {name:?} not found")),
        }
    }
    (auths, problems)
}

/// The logins one Secret holds.
fn logins(secret: &Value) -> Result<Vec<RegistryAuth>, String> {
    let data = crate::envs::data_of("Secret", secret);
    let (cfg, nested) = match (data.get(".dockerconfigjson"), data.get(".dockercfg")) {
        (Some(json), _) => (json, true),
        (None, Some(cfg)) => (cfg, false),
        (None, None) => return Err("has neither .dockerconfigjson nor .dockercfg".into()),
    };
    let parsed: Value =
        serde_json::from_str(cfg).map_err(|e| format!("its docker config is not JSON: {e}"))?;
    let map = if nested {
        parsed.get("auths")
    } else {
        Some(&parsed)
    };
    let Some(map) = map.and_then(Value::as_object) else {
        return Err("its docker config has no auths".into());
    };
    let mut out = Vec::new();
    for (server, entry) in map {
        let field = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or("");
        let (mut username, mut password) =
            (field("username").to_string(), field("password").to_string());
        if username.is_empty() && password.is_empty() && !field("auth").is_empty() {
            // `auth` alone: base64 of `user:password`.
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(field("auth"))
                .map_err(|e| format!("the auth of {server:?} is not base64: {e}"))?;
            let text = String::from_utf8_lossy(&decoded);
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| format!("the auth of {server:?} is not user:password"))?;
            (username, password) = (u.to_string(), p.to_string());
        }
        out.push(RegistryAuth {
            server: server.clone(),
            username,
            password,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn secret(key: &str, cfg: Value) -> Value {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cfg.to_string());
        json!({"kind": "Secret", "data": {key: b64}})
    }

    #[test]
    fn images_name_their_registry_as_docker_does() {
        assert_eq!(
            registry_of("127.0.0.1:5055/shoal-test/web:1"),
            "127.0.0.1:5055"
        );
        assert_eq!(
            registry_of("registry.example.com/a/b"),
            "registry.example.com"
        );
        assert_eq!(registry_of("localhost/x"), "localhost");
        assert_eq!(registry_of("nginx:1.27"), "docker.io");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        let hub = RegistryAuth {
            server: "https://index.docker.io/v1/".into(),
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(hub.matches("nginx"));
        assert!(!hub.matches("127.0.0.1:5055/nginx"));
        assert!(
            !format!("{hub:?}").contains("hunter2"),
            "Debug hides the password"
        );
    }

    #[test]
    fn logins_come_from_both_secret_types_and_auth_alone() {
        // What `kubectl create secret docker-registry` makes.
        let kubectl = secret(
            ".dockerconfigjson",
            json!({"auths": {"127.0.0.1:5055": {"username": "shoal", "password": "shoal-test", "auth": "c2hvYWw6c2hvYWwtdGVzdA=="}}}),
        );
        let legacy = secret(".dockercfg", json!({"reg.example": {"auth": "YTpiOmM="}}));
        let broken = secret(".dockerconfigjson", json!({"nope": 1}));
        let objects: crate::volumes::Objects = [
            (("Secret", "kubectl".to_string()), Some(kubectl)),
            (("Secret", "legacy".to_string()), Some(legacy)),
            (("Secret", "broken".to_string()), Some(broken)),
            (("Secret", "gone".to_string()), None),
        ]
        .into_iter()
        .collect();
        let pod = json!({"spec": {"imagePullSecrets": [
            {"name": "kubectl"}, {"name": "legacy"}, {"name": "broken"}, {"name": "gone"}]}});
        assert_eq!(referenced(&pod).len(), 4);
        let (auths, problems) = resolve(&pod, &objects);
        assert_eq!(
            auths
                .iter()
                .map(|a| (a.server.as_str(), a.username.as_str(), a.password.as_str()))
                .collect::<Vec<_>>(),
            [
                ("127.0.0.1:5055", "shoal", "shoal-test"),
                ("reg.example", "a", "b:c")
            ]
        );
        assert!(auths[0].matches("127.0.0.1:5055/shoal-test/web:1"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("no auths"), "{problems:?}");
        assert!(problems[1].contains("\"gone\" not found"), "{problems:?}");
    }
}
