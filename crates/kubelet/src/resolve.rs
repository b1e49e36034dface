//! What the kubelet reads for a pod before its runtime starts it: the
//! ConfigMaps and Secrets its environment and volumes name, the
//! directories of its claims' volumes, and the Services whose variables
//! its containers get (`envs`, `volumes`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use shoal_model::objects;
use shoal_store::ReadRequest;

use crate::{envs, pullsecrets, volumes, Kubelet, PodConfig, RuntimeError};

impl Kubelet {
    /// The Services whose variables `pod` gets, as upstream: `kubernetes`
    /// of `default` always, and with `enableServiceLinks` (the default)
    /// every Service of the pod's namespace, in name order.
    async fn service_envs(&self, pod: &Value) -> Result<Vec<envs::ServiceEnv>, String> {
        use shoal_model::resources::SERVICES;
        let ns = objects::namespace_of(pod);
        let links = pod
            .pointer("/spec/enableServiceLinks")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let read = |req| async move {
            self.store
                .read(req)
                .await
                .map(|r| r.kvs)
                .map_err(|e| e.to_string())
        };
        let mut kvs = Vec::new();
        if ns != "default" || !links {
            kvs.extend(read(ReadRequest::key(SERVICES.key("default", "kubernetes"))).await?);
        }
        if links {
            kvs.extend(read(ReadRequest::prefix(SERVICES.prefix(Some(ns)))).await?);
        }
        Ok(kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .filter_map(|svc| envs::ServiceEnv::of(&svc))
            .collect())
    }

    /// The directory of each `persistentVolumeClaim` volume of `pod`: the
    /// bound volume's `hostPath` or `local` path, checked to be this node's
    /// (its node affinity). A claim not bound yet, or bound elsewhere, is
    /// why the volume cannot be mounted (the pod waits, FailedMount).
    async fn claims(&self, pod: &Value) -> BTreeMap<String, Result<PathBuf, String>> {
        let ns = objects::namespace_of(pod);
        let mut out = BTreeMap::new();
        for (volume, claim) in volumes::claims(pod) {
            out.insert(volume, self.claim_dir(ns, &claim).await);
        }
        out
    }

    /// One object as the store holds it (None: not found).
    async fn read_object(
        &self,
        res: &shoal_model::resources::Resource,
        ns: &str,
        name: &str,
    ) -> Result<Option<Value>, String> {
        let r = self
            .store
            .read(ReadRequest::key(res.key(ns, name)))
            .await
            .map_err(|e| format!("reading {} {name:?}: {e}", res.kind))?;
        Ok(r.kvs
            .first()
            .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok()))
    }

    async fn claim_dir(&self, ns: &str, claim: &str) -> Result<PathBuf, String> {
        use shoal_model::resources::{PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES};
        let pvc = self
            .read_object(&PERSISTENTVOLUMECLAIMS, ns, claim)
            .await?
            .ok_or_else(|| format!("persistentvolumeclaim {claim:?} not found"))?;
        let pv_name = pvc
            .pointer("/spec/volumeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("persistentvolumeclaim {claim:?} is not bound yet"))?;
        let pv = self
            .read_object(&PERSISTENTVOLUMES, "", pv_name)
            .await?
            .ok_or_else(|| format!("persistentvolume {pv_name:?} not found"))?;
        volumes::volume_dir(&pv, &self.spec.name)
    }

    /// The pod with its environments, projected volumes and claims
    /// resolved (see `envs` and `volumes`): the ConfigMaps, Secrets,
    /// claims and volumes it names, read through the store.
    pub(crate) async fn resolved(&self, pod: &Value) -> Result<PodConfig, RuntimeError> {
        let ns = objects::namespace_of(pod);
        let mut sources = envs::Sources::new();
        let mut objects = volumes::Objects::new();
        let mut failed: Option<String> = None;
        let mut names = envs::referenced(pod);
        names.extend(volumes::referenced(pod));
        names.extend(pullsecrets::referenced(pod));
        for (kind, name) in names {
            let res = if kind == "Secret" {
                &shoal_model::resources::SECRETS
            } else {
                &shoal_model::resources::CONFIGMAPS
            };
            match self.store.read(ReadRequest::key(res.key(ns, &name))).await {
                Ok(r) => {
                    let found = r
                        .kvs
                        .first()
                        .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok());
                    if let Some(v) = &found {
                        sources.insert((kind, name.clone()), envs::data_of(kind, v));
                    }
                    objects.insert((kind, name), found);
                }
                Err(e) => failed = Some(format!("reading {kind} {name:?}: {e}")),
            }
        }
        let services = match self.service_envs(pod).await {
            Ok(s) => s,
            Err(e) => {
                failed = Some(format!("reading Services: {e}"));
                Vec::new()
            }
        };
        let node = envs::Node {
            name: &self.spec.name,
            host_ip: &self.spec.address,
            services: &services,
        };
        let resolved = envs::resolve(pod, &sources, &node);
        let mut config = PodConfig::of(pod)?;
        config.envs = envs::literal_envs(&resolved.pod);
        config.config_errors = resolved.errors;
        config.projections = volumes::resolve(pod, &objects);
        config.claims = self.claims(pod).await;
        let (auths, problems) = pullsecrets::resolve(pod, &objects);
        config.pull_auths = auths;
        for why in problems {
            // As upstream: the pull goes on without it.
            tracing::warn!(pod = %config.uid(), "imagePullSecrets: {why}");
        }
        if let Some(why) = failed {
            // The store could not say: refuse rather than start with a
            // partial environment.
            let names: Vec<String> = config
                .init_containers()
                .iter()
                .chain(config.containers())
                .map(|c| c.name.clone())
                .collect();
            for name in names {
                config.config_errors.insert(name, why.clone());
            }
        }
        Ok(config)
    }
}
