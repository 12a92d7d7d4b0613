#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests against the API schemas shipped in the PyPI package
kubernetes-validate (offline, strict: a wrong type or an unknown field fails), so a typo in
deploy/ is caught without a cluster.

    kubectl kustomize deploy/overlays/production | validate_k8s.py --kubernetes-version 1.32.0 -
    validate_k8s.py --kubernetes-version 1.32.0 rendered.yaml

stdout, one line per object: `ok <kind>/<name>`, `skip <kind>/<name> (custom resource)` for
objects of API groups kubernetes-validate does not know (CloudNativePG, KEDA, cert-manager,
Istio, ...), or `FAIL <kind>/<name>: <reason>`. Core objects are those whose API group has no
dot (core, apps, batch, policy, autoscaling, ...) or is one of the Kubernetes groups the schemas
describe (networking.k8s.io, rbac.authorization.k8s.io, ...); an unknown kind or version in such
a group fails. Exit 1 on any FAIL, on input that is not YAML, or when there is no object at all;
exit 2 on a usage error (such as a Kubernetes version without schemas).
"""

import argparse
import json
import sys
from importlib import resources

import kubernetes_validate
import yaml
from kubernetes_validate.utils import all_versions
from packaging.version import Version

DEFAULT_VERSION = "1.32.0"


def schema_version(desired: str) -> str:
    """The newest schema version not newer than `desired` (as kubernetes-validate picks it)."""
    wanted = Version(desired.lstrip("v"))
    wanted_minor = (wanted.major, wanted.minor)
    available = [v for v in all_versions() if (Version(v).major, Version(v).minor) <= wanted_minor]
    if not available or wanted_minor > max((Version(v).major, Version(v).minor) for v in all_versions()):
        raise ValueError(
            f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for "
            f"Kubernetes {desired} (it has {all_versions()[0]} to {all_versions()[-1]})"
        )
    return available[-1]


def known_kinds(version: str) -> set:
    """(group, version, kind) of every object the schemas of `version` describe."""
    path = resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", f"v{version}-local-strict", "_definitions.json"
    )
    schema = json.loads(path.read_text())
    definitions = schema.get("$defs") or schema.get("definitions") or {}
    kinds = set()
    for definition in definitions.values():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            kinds.add((gvk.get("group", ""), gvk["version"], gvk["kind"]))
    return kinds


def split_api_version(api_version: str):
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def describe(error: Exception) -> str:
    path = ".".join(str(p) for p in getattr(error, "path", []))
    message = getattr(error, "message", None) or str(error)
    return f"{path}: {message}" if path else message


def every_error(document: dict, version: str) -> list:
    """All schema errors of `document`, not only the one kubernetes_validate.validate raises:
    the same strict schema and definitions, read with kubernetes_validate's own helpers."""
    import re

    import jsonschema
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", document["apiVersion"])
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = schema_contents(f"{folder}/{document['kind'].lower()}-{api}.json", version)
    definitions = schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.path])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kubernetes-version",
        default=DEFAULT_VERSION,
        help=f"Kubernetes version whose schemas to use (default {DEFAULT_VERSION})",
    )
    parser.add_argument("file", help="rendered manifests (YAML, several documents), or - for stdin")
    args = parser.parse_args()

    try:
        version = schema_version(args.kubernetes_version)
        text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kinds = known_kinds(version)
    groups = {group for group, _, _ in kinds}

    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        print(f"error: {args.file} is not YAML: {error}", file=sys.stderr)
        return 1

    counts = {"ok": 0, "skip": 0, "FAIL": 0}
    for document in documents:
        if not isinstance(document, dict):
            print(f"FAIL <not an object>: {type(document).__name__} at the top level of a document")
            counts["FAIL"] += 1
            continue
        kind = document.get("kind") or "<no kind>"
        name = (document.get("metadata") or {}).get("name") or "<unnamed>"
        ident = f"{kind}/{name}"
        api_version = document.get("apiVersion")
        if not isinstance(api_version, str) or not api_version:
            print(f"FAIL {ident}: no apiVersion")
            counts["FAIL"] += 1
            continue
        group, api = split_api_version(api_version)
        if group not in groups:
            if "." in group:
                print(f"skip {ident} (custom resource)")
                counts["skip"] += 1
            else:
                print(f"FAIL {ident}: unknown API group {group!r} ({api_version})")
                counts["FAIL"] += 1
            continue
        if (group, api, kind) not in kinds:
            print(f"FAIL {ident}: Kubernetes {version} has no kind {kind} in {api_version}")
            counts["FAIL"] += 1
            continue
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            try:
                reasons = [describe(e) for e in every_error(document, version)] or [describe(error)]
            except Exception:  # the first error is enough when the full list cannot be had
                reasons = [describe(error)]
            print(f"FAIL {ident}: {'; '.join(reasons)}")
            counts["FAIL"] += 1
            continue
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as error:
            print(f"FAIL {ident}: {error.message}")
            counts["FAIL"] += 1
            continue
        print(f"ok {ident}")
        counts["ok"] += 1

    print(
        f"validate_k8s: {counts['ok']} ok, {counts['skip']} skipped (custom resources), "
        f"{counts['FAIL']} failed; Kubernetes {version} schemas, kubernetes-validate "
        f"{kubernetes_validate.__version__} (strict)",
        file=sys.stderr,
    )
    if not documents:
        print(f"error: no object in {args.file}", file=sys.stderr)
        return 1
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
