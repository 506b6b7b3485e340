#!/usr/bin/env bash
# Validates the manifests offline: the Kubernetes kinds against the Kubernetes schemas that
# `kubernetes-validate` (PyPI) ships, strictly (unknown fields fail); the KEDA ScaledObject
# against schemas/keda-scaledobject.schema.json; and that the names which must agree do (the
# queue key KEDA watches, the ConfigMap, Secret and claim the pods use).
set -euo pipefail
cd "$(dirname "$0")"
command -v kubernetes-validate >/dev/null 2>&1 || {
    echo "k8s: kubernetes-validate is missing: pip install kubernetes-validate" >&2
    exit 1
}
kubernetes-validate --strict --quiet ./*.yaml scaling/hpa.yaml
python3 - <<'PY'
import json, sys
from pathlib import Path
import jsonschema, yaml

def docs(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]

schema = json.loads(Path("schemas/keda-scaledobject.schema.json").read_text())
(scaled,) = docs("scaling/keda.yaml")
jsonschema.validate(scaled, schema)

config = next(d for d in docs("configmap.yaml") if d["kind"] == "ConfigMap")["data"]
redis_trigger = next(t for t in scaled["spec"]["triggers"] if t["type"] == "redis")
want = config["RECSYS_QUEUE"] + ":active"
problems = []
if redis_trigger["metadata"]["listName"] != want:
    problems.append(f"keda.yaml watches {redis_trigger['metadata']['listName']!r}, the queue keeps its jobs in {want!r}")
objects = [d for f in sorted(Path(".").glob("*.yaml")) for d in docs(f)]
defined = {(d["kind"], d["metadata"]["name"]) for d in objects}
target = scaled["spec"]["scaleTargetRef"]["name"]
if ("Deployment", target) not in defined:
    problems.append(f"keda.yaml scales a Deployment {target!r} that no manifest defines")
(hpa,) = docs("scaling/hpa.yaml")
if ("Deployment", hpa["spec"]["scaleTargetRef"]["name"]) not in defined:
    problems.append("hpa.yaml scales a Deployment that no manifest defines")
for d in objects:
    spec = d.get("spec", {}).get("template", {}).get("spec")
    if not spec:
        continue
    name = d["metadata"]["name"]
    for c in spec["containers"]:
        for src in c.get("envFrom", []):
            ref = src.get("configMapRef", {}).get("name")
            if ref and ("ConfigMap", ref) not in defined:
                problems.append(f"{name} reads a ConfigMap {ref!r} that no manifest defines")
    for v in spec.get("volumes", []):
        claim = v.get("persistentVolumeClaim", {}).get("claimName")
        if claim and ("PersistentVolumeClaim", claim) not in defined:
            problems.append(f"{name} mounts a claim {claim!r} that no manifest defines")
if problems:
    print("\n".join("k8s: " + p for p in problems), file=sys.stderr)
    sys.exit(1)
print(f"k8s: {len(objects)} objects and the KEDA ScaledObject are valid")
PY
