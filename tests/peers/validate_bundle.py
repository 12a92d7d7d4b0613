#!/usr/bin/env python3
"""Validates a GDPR export bundle against its JSON Schema (draft 2020-12) with the PyPI package
jsonschema, a validator no one on the project wrote, so the bundle customer-svc builds is checked
against docs/gdpr/export-bundle.schema.json by someone else's reading of the standard.

    validate_bundle.py docs/gdpr/export-bundle.schema.json bundle.json

Formats are asserted, not only annotated: `uuid` (built into jsonschema) and `date-time` (through
the PyPI package rfc3339-validator; without it jsonschema would silently skip date-time, so its
absence is a usage error). The schema itself is checked against the draft 2020-12 metaschema
first.

stdout: `bundle valid` when the bundle conforms. stderr: every error, one line each, as
`<path>: <message>` (the path in JSON Pointer form, `/` for the document itself), then a count.
Exit 1 on any error or on a bundle that is not JSON; exit 2 on a usage error (unreadable files,
a schema that is not JSON or not a valid schema, no date-time checker).
"""

import argparse
import json
import sys
from importlib.metadata import version

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

# The formats the bundle schema relies on; each must really be checked.
REQUIRED_FORMATS = ("uuid", "date-time")


def pointer(path) -> str:
    """`path` (a deque of keys and indexes) as a JSON Pointer."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else "/"


def describe(error: jsonschema.ValidationError) -> list:
    """`<path>: <message>` lines of `error`. For an `anyOf` that failed (the schema's "an object
    or null", "a date-time or null"), the errors of the branch of the value's type instead, so
    each line names the real culprit rather than "is not valid under any of the given schemas"."""
    if error.context:
        branches = {}
        for e in error.context:
            branches.setdefault(e.relative_schema_path[0], []).append(e)
        # A branch is of another type when it fails on the value's type itself.
        typed = [b for b in branches.values() if not any(e.validator == "type" and not e.relative_path for e in b)]
        if len(typed) == 1:
            return [line for e in typed[0] for line in describe(e)]
    return [f"{pointer(error.absolute_path)}: {error.message}"]


def load(path: str, what: str):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{what} {path} is not JSON: {error}") from error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("schema", help="the bundle's JSON Schema (docs/gdpr/export-bundle.schema.json)")
    parser.add_argument("bundle", help="the export bundle (JSON)")
    args = parser.parse_args()

    checker = FormatChecker()
    missing = [f for f in REQUIRED_FORMATS if f not in checker.checkers]
    if missing:
        print(
            f"error: jsonschema {version('jsonschema')} cannot check format(s) {', '.join(missing)}"
            " (is rfc3339-validator installed?)",
            file=sys.stderr,
        )
        return 2

    try:
        schema = load(args.schema, "schema")
        Draft202012Validator.check_schema(schema)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SchemaError as error:
        print(f"error: {args.schema} is not a valid draft 2020-12 schema: {error.message}", file=sys.stderr)
        return 2

    try:
        bundle = load(args.bundle, "bundle")
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    validator = Draft202012Validator(schema, format_checker=checker)
    errors = sorted(validator.iter_errors(bundle), key=lambda e: [str(p) for p in e.absolute_path])
    lines = list(dict.fromkeys(line for error in errors for line in describe(error)))
    for line in lines:
        print(line, file=sys.stderr)
    if lines:
        print(
            f"validate_bundle: {len(lines)} error(s) in {args.bundle}; jsonschema {version('jsonschema')}",
            file=sys.stderr,
        )
        return 1
    print("bundle valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
