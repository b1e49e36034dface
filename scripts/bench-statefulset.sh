#!/usr/bin/env bash
# StatefulSet scale-up with the process runtime (docs/BENCHMARKS.md, issue 24):
# against a running `shoal dev`, a StatefulSet of N replicas (busybox
# `sleep`, Ready when running) is created with OrderedReady, then with
# Parallel pod management, each with and without a claim per pod, and timed
# from `kubectl apply` to `kubectl rollout status` returning (every replica
# Ready). Each set is deleted (and its claims) before the next. Prints one
# line per run: policy, claims, replicas, seconds.
#
#   scripts/bench-statefulset.sh KUBECONFIG [N=100] [ROUNDS=1]
set -euo pipefail
export KUBECONFIG=$1
n=${2:-100}
rounds=${3:-1}
k=$(cd "$(dirname "$0")/.." && ./scripts/kubectl.sh)

manifest() { # policy claims
  cat <<EOF
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: bench}
spec:
  serviceName: bench
  replicas: $n
  podManagementPolicy: $1
  selector: {matchLabels: {app: bench}}
  template:
    metadata: {labels: {app: bench}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: c
        image: busybox
        command: [sleep, 1d]
EOF
  if [ "$2" = yes ]; then
    cat <<EOF
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
EOF
  fi
}

now() { date +%s.%N; }

for round in $(seq 1 "$rounds"); do
  for claims in no yes; do
    for policy in OrderedReady Parallel; do
      start=$(now)
      manifest "$policy" "$claims" | "$k" apply -f - >/dev/null
      "$k" rollout status statefulset/bench --timeout=900s >/dev/null
      end=$(now)
      printf '%s round=%s claims=%s replicas=%s seconds=%s\n' \
        "$policy" "$round" "$claims" "$n" "$(awk "BEGIN { printf \"%.1f\", $end - $start }")"
      "$k" delete statefulset bench --wait=true >/dev/null
      "$k" wait --for=delete pod -l app=bench --timeout=300s >/dev/null 2>&1 || true
      if [ "$claims" = yes ]; then
        # shellcheck disable=SC2046
        "$k" delete pvc $(seq -f 'data-bench-%g' 0 $((n - 1))) --wait=true >/dev/null
      fi
    done
  done
done
