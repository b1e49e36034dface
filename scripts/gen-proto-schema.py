#!/usr/bin/env python3
"""Generate k8s_proto_schema.txt: the Kubernetes protobuf schema used by protobuf.rs.

Inputs (both are crates.io sources, read as text):
  * k8s-pb 0.9.0: prost-generated Rust from the upstream generated.proto files.
    Gives, for each message, the field numbers and wire types
    (`#[prost(<type>, <optional|repeated>, tag = "N")]`, `btree_map = "string, X"`).
  * k8s-openapi 0.29.0 (src/v1_33 .. v1_37): gives the JSON field names, from the
    serde code (`"clusterIP" => Field::Key_cluster_ip`).
The two are joined on (type name, snake_case field name).

Only the message types reachable from KINDS are written. The script fails (exit 1)
if a field of a reachable message cannot be given a JSON name or a kind, so no field
is silently dropped.

Usage: gen_schema.py [--k8s-pb DIR] [--k8s-openapi DIR] [--out FILE]

Output format (see also the module doc of protobuf.rs):
  # comment
  @ <apiVersion|*> <Kind> <Type>            top-level kind -> message type
  <Type> <num>:<jsonName>:<fieldType> ...     one line per message type
  fieldType := [ "[]" (repeated) | "{}" (map<string, _>) ] base
  base := string | bool | int32 | int64 | double | bytes          (scalars)
        | time | microtime | duration | intorstring | quantity | rawjson   (special)
        | <Type>                                                  (a message; has a '.')
Type names drop the prefix "io.k8s.api." and shorten
"io.k8s.apimachinery.pkg.apis.meta.v1." to "meta.v1.".
"""

import argparse
import glob
import os
import re
import sys

# (apiVersion, kind, full proto message name). apiVersion "*" matches any group/version.
KINDS = [
    ("v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap"),
    ("v1", "Secret", "io.k8s.api.core.v1.Secret"),
    ("v1", "Namespace", "io.k8s.api.core.v1.Namespace"),
    ("v1", "Service", "io.k8s.api.core.v1.Service"),
    ("v1", "ServiceAccount", "io.k8s.api.core.v1.ServiceAccount"),
    ("v1", "Pod", "io.k8s.api.core.v1.Pod"),
    ("v1", "Endpoints", "io.k8s.api.core.v1.Endpoints"),
    ("v1", "Event", "io.k8s.api.core.v1.Event"),
    ("v1", "Node", "io.k8s.api.core.v1.Node"),
    ("apps/v1", "Deployment", "io.k8s.api.apps.v1.Deployment"),
    ("apps/v1", "ReplicaSet", "io.k8s.api.apps.v1.ReplicaSet"),
    ("apps/v1", "DaemonSet", "io.k8s.api.apps.v1.DaemonSet"),
    ("apps/v1", "StatefulSet", "io.k8s.api.apps.v1.StatefulSet"),
    ("batch/v1", "Job", "io.k8s.api.batch.v1.Job"),
    ("batch/v1", "CronJob", "io.k8s.api.batch.v1.CronJob"),
    ("networking.k8s.io/v1", "Ingress", "io.k8s.api.networking.v1.Ingress"),
    ("discovery.k8s.io/v1", "EndpointSlice", "io.k8s.api.discovery.v1.EndpointSlice"),
    ("coordination.k8s.io/v1", "Lease", "io.k8s.api.coordination.v1.Lease"),
    # DeleteOptions is registered in every group version (client-go encodes it with the
    # client's group version), so it is accepted under any apiVersion.
    ("*", "DeleteOptions", "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
    ("autoscaling/v1", "Scale", "io.k8s.api.autoscaling.v1.Scale"),
    ("policy/v1", "Eviction", "io.k8s.api.policy.v1.Eviction"),
    ("policy/v1", "PodDisruptionBudget", "io.k8s.api.policy.v1.PodDisruptionBudget"),
]

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
# Upstream messages with a custom JSON form -> special field kind, with the proto
# fields (number, prost type, name) the decoder relies on.
SPECIAL = {
    META + "Time": ("time", [(1, "int64", "seconds"), (2, "int32", "nanos")]),
    META + "MicroTime": ("microtime", [(1, "int64", "seconds"), (2, "int32", "nanos")]),
    META + "Duration": ("duration", [(1, "int64", "duration")]),
    META + "FieldsV1": ("rawjson", [(1, "bytes", "raw")]),
    "io.k8s.apimachinery.pkg.runtime.RawExtension": ("rawjson", [(1, "bytes", "raw")]),
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": (
        "intorstring",
        [(1, "int64", "type"), (2, "int32", "int_val"), (3, "string", "str_val")],
    ),
    "io.k8s.apimachinery.pkg.api.resource.Quantity": ("quantity", [(1, "string", "string")]),
}

SCALARS = {"string", "bool", "int32", "int64", "double", "bytes"}


def fail(msg):
    print("gen_schema.py: error: " + msg, file=sys.stderr)
    sys.exit(1)


def crate_path_to_package(segments):
    """k8s-pb module path (e.g. ['api', 'core', 'v1']) -> proto package."""
    segs = list(segments)
    segs[0] = segs[0].replace("_", "-")  # apiextensions_apiserver, kube_aggregator
    return "io.k8s." + ".".join(segs)


def strip_wrappers(ty):
    """Innermost type path of a prost field type."""
    ty = ty.replace(" ", "").replace(",>", ">")
    m = re.fullmatch(r"::prost::alloc::collections::BTreeMap<(.*),(.*)>", ty)
    if m:
        ty = m.group(2)
    for w in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        while ty.startswith(w) and ty.endswith(">"):
            ty = ty[len(w) : -1]
    return ty


def resolve(module, path):
    """Resolve a Rust type path used in `module` to a proto full name."""
    parts = path.split("::")
    mod = list(module)
    while parts and parts[0] == "super":
        parts.pop(0)
        mod.pop()
    if parts and parts[0] == "crate":
        parts.pop(0)
        mod = []
    return crate_path_to_package(mod + parts[:-1]) + "." + parts[-1]


def parse_k8s_pb(root):
    """-> {full_name: [(num, name, label, base, message_full_name_or_None)]}"""
    messages = {}
    src = os.path.join(root, "src")
    for path in sorted(glob.glob(os.path.join(src, "**", "mod.rs"), recursive=True)):
        module = os.path.relpath(os.path.dirname(path), src).split(os.sep)
        if module == ["."]:
            continue
        package = crate_path_to_package(module)
        lines = open(path, encoding="utf-8").read().split("\n")
        i = 0
        current = None
        while i < len(lines):
            line = lines[i]
            m = re.match(r"^pub struct (\w+) \{", line)
            if m:
                current = package + "." + m.group(1)
                messages[current] = []
                i += 1
                continue
            if line.startswith("pub enum") or re.match(r"^pub mod \w+ \{", line):
                fail("unexpected enum/oneof in %s: %s" % (path, line))
            if line == "}":
                current = None
            m = re.match(r"^\s+#\[prost\((.*)\)\]\s*$", line)
            if m and current is not None:
                attr = m.group(1)
                # the field declaration follows (maybe after more attributes), maybe wrapped
                j = i + 1
                decl = ""
                while j < len(lines):
                    s = lines[j].strip()
                    j += 1
                    if s.startswith("#[") or s.startswith("///"):
                        continue
                    decl += s
                    if decl.endswith(",") and decl.count("<") == decl.count(">"):
                        break
                dm = re.fullmatch(r"pub (r#)?(\w+):(.*),", decl)
                if not dm:
                    fail("cannot parse field declaration in %s: %r" % (path, decl))
                name, rust_ty = dm.group(2), dm.group(3).strip()
                tag = re.search(r'tag = "(\d+)"', attr)
                if not tag:
                    fail("no tag in %s: %s" % (path, attr))
                num = int(tag.group(1))
                mm = re.match(r'btree_map = "string, (\w+)"', attr)
                if mm:
                    label, base = "map", mm.group(1)
                else:
                    am = re.match(r'(\w+)(?: = "vec")?, (optional|repeated|required)', attr)
                    if not am:
                        fail("unsupported prost attribute in %s: %s" % (path, attr))
                    base, label = am.group(1), am.group(2)
                    if label == "required":
                        label = "optional"
                msg = None
                if base == "message":
                    msg = resolve(module, strip_wrappers(rust_ty))
                elif base not in SCALARS:
                    fail("unsupported prost type %r in %s (%s)" % (base, current, attr))
                messages[current].append((num, name, label, base, msg))
                i = j
                continue
            i += 1
    return messages


def norm(s):
    return re.sub(r"[^a-z0-9]", "", s.lower())


def parse_openapi(root):
    """-> {norm(full_name): (full_name, {snake_key: json_name})}"""
    defs = {}
    # Later versions only add types and fields; names of existing fields never change.
    for vdir in sorted(glob.glob(os.path.join(root, "src", "v1_*"))):
        for path in glob.glob(os.path.join(vdir, "**", "*.rs"), recursive=True):
            text = open(path, encoding="utf-8").read()
            m = re.match(r"// Generated from definition (\S+)", text)
            if not m:
                continue
            full = m.group(1)
            keys = dict(
                (key, js) for js, key in re.findall(r'"([^"]+)" => Field::Key_(\w+),', text)
            )
            entry = defs.setdefault(norm(full), (full, {}))
            entry[1].update(keys)
    return defs


def short(name):
    if name.startswith("io.k8s.api."):
        return name[len("io.k8s.api.") :]
    if name.startswith(META):
        return "meta.v1." + name[len(META) :]
    return name


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    reg = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/k8s-openapi-0.29.0"))
    ap = argparse.ArgumentParser()
    pb = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/k8s-pb-0.9.0"))
    pb_default = "/tmp/k8s-pb-0.9.0" if os.path.isdir("/tmp/k8s-pb-0.9.0") or not pb else pb[0]
    ap.add_argument("--k8s-pb", default=pb_default)
    ap.add_argument("--k8s-openapi", default=reg[0] if reg else None)
    ap.add_argument("--out", default=os.path.join(here, "..", "crates", "api", "src", "k8s_proto_schema.txt"))
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.k8s_pb, "src")):
        fail("k8s-pb 0.9.0 source not found; pass --k8s-pb")
    if not args.k8s_openapi or not os.path.isdir(args.k8s_openapi):
        fail("k8s-openapi 0.29.0 source not found; pass --k8s-openapi")

    messages = parse_k8s_pb(args.k8s_pb)
    openapi = parse_openapi(args.k8s_openapi)

    for full, (_, want) in SPECIAL.items():
        have = [(n, b if b != "message" else "message", name) for n, name, _, b, _ in messages.get(full, [])]
        if sorted(have) != sorted(want):
            fail("special type %s has unexpected proto fields %r" % (full, have))

    # Breadth-first walk from the top-level kinds.
    order, seen, queue = [], set(), [t for _, _, t in KINDS]
    while queue:
        t = queue.pop(0)
        if t in seen or t in SPECIAL:
            continue
        if t not in messages:
            fail("message type %s not found in k8s-pb" % t)
        seen.add(t)
        order.append(t)
        for _, _, _, _, msg in messages[t]:
            if msg:
                queue.append(msg)

    out_lines = [
        "# Kubernetes protobuf schema for protobuf.rs. GENERATED by gen_schema.py from",
        "# k8s-pb 0.9.0 (field numbers, wire types) and k8s-openapi 0.29.0 (JSON names); do not edit.",
        "# '@ apiVersion Kind Type' maps a top-level kind to its message ('*' = any apiVersion).",
        "# 'Type num:jsonName:fieldType ...'; fieldType: '[]' repeated, '{}' map<string,_>, then",
        "# string|bool|int32|int64|double|bytes|time|microtime|duration|intorstring|quantity|rawjson",
        "# or a message Type. jsonName '-': inlined Go struct, its fields go into the parent object.",
        "# 'meta.v1.' = io.k8s.apimachinery.pkg.apis.meta.v1.; 'io.k8s.api.' is dropped.",
    ]
    for api_version, kind, t in KINDS:
        out_lines.append("@ %s %s %s" % (api_version, kind, short(t)))

    # JSON names per type: its own k8s-openapi definition, plus, for a Go struct embedded
    # with `json:",inline"` (a message field with no JSON name of its own, e.g.
    # Volume.volumeSource, Probe.handler, ConfigMapKeySelector.localObjectReference), the
    # names of the type that inlines it.
    keys = {}
    for t in order:
        od = openapi.get(norm(t))
        keys[t] = dict(od[1]) if od else {}

    def json_name(t, name):
        k = keys[t]
        js = k.get(name) or k.get(name + "_")
        if js is None:
            cands = sorted(set(v for v in k.values() if norm(v) == norm(name)))
            if len(cands) == 1:
                js = cands[0]
        return js

    changed = True
    while changed:
        changed = False
        for t in order:
            for _, name, label, base, msg in messages[t]:
                if base == "message" and label == "optional" and msg not in SPECIAL:
                    if json_name(t, name) is None and keys[t]:
                        before = len(keys[msg])
                        keys[msg].update(keys[t])
                        changed |= len(keys[msg]) != before

    def field_names(t):
        """JSON names a message contributes to its JSON object (inlined ones flattened)."""
        out = []
        for _, name, _, base, msg in messages[t]:
            js = json_name(t, name)
            if js is None and base == "message" and msg not in SPECIAL:
                out += field_names(msg)
            else:
                out.append(js)
        return out

    problems = []
    total_fields = 0
    for t in order:
        fields = []
        nums = set()
        for num, name, label, base, msg in sorted(messages[t]):
            if num in nums:
                problems.append("%s: duplicate field number %d" % (t, num))
            nums.add(num)
            js = json_name(t, name)
            if js is None and base == "message" and label == "optional" and msg not in SPECIAL:
                inner = field_names(msg)
                own = set(keys[t].values())
                if keys[t] and all(n in own for n in inner):
                    js = "-"  # inlined
            if js is None or not re.fullmatch(r"[A-Za-z0-9_$.-]+", js):
                problems.append("%s: field %d %s has no JSON name in k8s-openapi" % (t, num, name))
                continue
            if base == "message":
                b = SPECIAL[msg][0] if msg in SPECIAL else short(msg)
            else:
                b = base
            prefix = {"optional": "", "repeated": "[]", "map": "{}"}[label]
            fields.append("%d:%s:%s%s" % (num, js, prefix, b))
        if len(fields) != len(messages[t]):
            problems.append("%s: %d of %d fields mapped" % (t, len(fields), len(messages[t])))
        total_fields += len(fields)
        out_lines.append(" ".join([short(t)] + fields))
    if problems:
        fail("unmapped fields:\n  " + "\n  ".join(problems))

    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(out_lines) + "\n")
    print(
        "wrote %s: %d kinds, %d message types, %d fields, %d bytes"
        % (args.out, len(KINDS), len(order), total_fields, os.path.getsize(args.out))
    )


if __name__ == "__main__":
    main()
