//! Eviction (`pods/eviction`, policy/v1 Eviction): a pod's deletion that
//! asks its PodDisruptionBudget first, as upstream's eviction REST does.
//! A pod that is finished, pending or already being deleted, or that no
//! budget covers, is deleted at once; a pod two budgets cover is refused
//! (500, as upstream). Otherwise the budget must allow a disruption: its
//! status must be current (observedGeneration), and `disruptionsAllowed`
//! above zero, or the answer is 429 TooManyRequests, which `kubectl
//! drain` retries. An allowed eviction spends one disruption and records
//! the pod in `disruptedPods` in one guarded status write, then deletes
//! the pod (gracefully, with the Eviction's DeleteOptions). A pod that is
//! not Ready goes without spending anything under `AlwaysAllow`, or under
//! `IfHealthyBudget` while the budget is healthy.
//!
//! The node-lifecycle controller evicts through here too, with
//! [`Budget::Charge`]: its pods are on a node that is gone, so their
//! disruption has already happened and a refusal would only keep their
//! replacements from starting (upstream's taint manager does not ask
//! budgets at all). Their evictions are charged to the budget (a
//! disruption spent while one is left, the pod recorded) so a `kubectl
//! drain` elsewhere sees the budget used, and never refused.

use serde_json::{json, Value};
use shoal_store::ReadRequest;

use super::{DeleteOptions, Registry, UpdateOptions, RETRIES};
use crate::disruption::{self, MAX_DISRUPTED_PODS};
use crate::errors::{ApiError, ApiResult};
use crate::objects;
use crate::resources::{PODDISRUPTIONBUDGETS as BUDGETS, PODS};

/// How an eviction treats the pod's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// The eviction subresource's rules (see the module note).
    Respect,
    /// Charged when it can be, never refused (the node lifecycle's
    /// evictions of pods of a lost node).
    Charge,
}

/// 429 with upstream's message, and why in the cause.
fn too_many(why: String) -> ApiError {
    ApiError {
        details: Some(json!({"causes": [{"reason": "DisruptionBudget", "message": why}]})),
        ..ApiError::new(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        )
    }
}

impl Registry {
    /// Evicts pod `ns/name` (see the module note); returns the pod as the
    /// delete left it.
    pub async fn evict(
        &self,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
        budget: Budget,
    ) -> ApiResult<Value> {
        for attempt in 1..=RETRIES {
            let last = attempt == RETRIES;
            let (pod, _) = self.current(&PODS, ns, name).await?;
            if disruption::ignores_budgets(&pod) {
                return self.delete(&PODS, ns, name, opts).await;
            }
            let budgets = self.budgets_of(&pod).await?;
            let (pdb, rev) = match budgets.as_slice() {
                [] => return self.delete(&PODS, ns, name, opts).await,
                [one] => one.clone(),
                _ if budget == Budget::Charge => {
                    return self.delete(&PODS, ns, name, opts).await
                }
                _ => {
                    return Err(ApiError::new(
                        500,
                        "InternalError",
                        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    ))
                }
            };
            if !disruption::pod_ready(&pod) && disruption::unhealthy_may_go(&pdb) {
                return self.delete(&PODS, ns, name, opts).await;
            }
            let status = match spend(&pdb, name, budget) {
                Ok(Some(status)) => status,
                Ok(None) => return self.delete(&PODS, ns, name, opts).await,
                Err(e) => return Err(e),
            };
            if !opts.dry_run {
                let write = UpdateOptions {
                    sub: Some("status"),
                    precondition: Some(rev),
                    dry_run: false,
                };
                let pdb_name = objects::name_of(&pdb).to_string();
                let spent = self
                    .update(&BUDGETS, ns, &pdb_name, write, |old| {
                        let mut new = old.clone();
                        new["status"] = status.clone();
                        Ok(new)
                    })
                    .await;
                match spent {
                    Ok(_) => {}
                    // Another eviction spent from it meanwhile: ask again
                    // (a charged one that keeps losing goes uncharged,
                    // never refused).
                    Err(e) if e.code == 409 && !(last && budget == Budget::Charge) => continue,
                    Err(e) if e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            return self.delete(&PODS, ns, name, opts).await;
        }
        Err(too_many(
            "the disruption budget is being changed by other evictions; try again".into(),
        ))
    }

    /// The budgets (with their mod_revs) that cover `pod`, read from the
    /// store (a budget just spent by another eviction is seen spent).
    async fn budgets_of(&self, pod: &Value) -> ApiResult<Vec<(Value, u64)>> {
        let ns = objects::namespace_of(pod);
        let r = self
            .writer
            .read(ReadRequest::prefix(BUDGETS.prefix(Some(ns))))
            .await?;
        Ok(r.kvs
            .into_iter()
            .filter_map(|kv| {
                let pdb: Value = serde_json::from_slice(&kv.value).ok()?;
                disruption::covers(&pdb, pod)
                    .then(|| (objects::with_rv(pdb, kv.mod_rev), kv.mod_rev))
            })
            .collect())
    }
}

/// Budget `pdb`'s status after one disruption of pod `pod` is spent
/// from it; Ok(None) when a charged eviction has nothing to spend.
fn spend(pdb: &Value, pod: &str, budget: Budget) -> ApiResult<Option<Value>> {
    let name = objects::name_of(pdb);
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let observed = disruption::status_count(pdb, "observedGeneration");
    let allowed = disruption::status_count(pdb, "disruptionsAllowed");
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    let refusal = if observed < generation {
        Some(too_many(format!(
            "The disruption budget {name} is still being processed by the server."
        )))
    } else if allowed < 0 {
        Some(ApiError::new(
            403,
            "Forbidden",
            "pdb disruptions allowed is negative",
        ))
    } else if disrupted > MAX_DISRUPTED_PODS {
        Some(ApiError::new(
            403,
            "Forbidden",
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ))
    } else if allowed == 0 {
        Some(too_many(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            disruption::status_count(pdb, "desiredHealthy"),
            disruption::status_count(pdb, "currentHealthy"),
        )))
    } else {
        None
    };
    if let Some(e) = refusal {
        return match budget {
            Budget::Respect => Err(e),
            Budget::Charge => Ok(None),
        };
    }
    let mut status = pdb.get("status").cloned().unwrap_or_else(|| json!({}));
    status["disruptionsAllowed"] = json!(allowed - 1);
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(objects::now());
    if allowed == 1 {
        let mut obj = json!({"status": status});
        super::set_condition(
            &mut obj,
            json!({
                "type": disruption::DISRUPTION_ALLOWED,
                "status": "False",
                "reason": "InsufficientPods",
                "message": "",
                "observedGeneration": generation,
                "lastTransitionTime": objects::now(),
            }),
        );
        status = obj["status"].take();
    }
    Ok(Some(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(generation: i64, observed: i64, allowed: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": generation},
               "status": {"observedGeneration": observed, "disruptionsAllowed": allowed,
                          "currentHealthy": 3, "desiredHealthy": 3}})
    }

    #[test]
    fn a_budget_with_disruptions_left_spends_one_and_records_the_pod() {
        let s = spend(&pdb(1, 1, 2), "web-0", Budget::Respect)
            .unwrap()
            .unwrap();
        assert_eq!(s["disruptionsAllowed"], 1);
        assert!(s["disruptedPods"]["web-0"].is_string());
        assert!(s.get("conditions").is_none());
        let s = spend(&pdb(1, 1, 1), "web-0", Budget::Respect)
            .unwrap()
            .unwrap();
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
    }

    #[test]
    fn a_spent_or_stale_budget_refuses_with_429_and_says_why() {
        let e = spend(&pdb(1, 1, 0), "web-0", Budget::Respect).unwrap_err();
        assert_eq!(e.code, 429);
        let why = e.details.unwrap()["causes"][0]["message"].clone();
        assert_eq!(
            why,
            "The disruption budget web needs 3 healthy pods and has 3 currently"
        );
        let e = spend(&pdb(2, 1, 5), "web-0", Budget::Respect).unwrap_err();
        assert_eq!(e.code, 429);
        assert!(e
            .details
            .unwrap()
            .to_string()
            .contains("still being processed"));
        assert_eq!(
            spend(&pdb(1, 1, -1), "p", Budget::Respect)
                .unwrap_err()
                .code,
            403
        );
    }

    #[test]
    fn a_charged_eviction_is_never_refused() {
        assert!(spend(&pdb(1, 1, 0), "web-0", Budget::Charge)
            .unwrap()
            .is_none());
        assert!(spend(&pdb(1, 1, 1), "web-0", Budget::Charge)
            .unwrap()
            .is_some());
    }
}
