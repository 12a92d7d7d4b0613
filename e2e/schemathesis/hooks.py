"""schemathesis hooks of e2e/tests/bff_schemathesis.rs (loaded through SCHEMATHESIS_HOOKS).

A client sends a fresh Idempotency-Key for each new request and the same one only for a
repeat of it. The fuzzer draws short keys and reuses them across unrelated bodies, which the
API rightly answers with 422 (`idempotency-key-reused`, the IETF draft's answer; tested in
bff_security.rs): a phase whose every valid placement lands on a reused key then reads as
"schema validation mismatch". So every well-formed key becomes a fresh one; a malformed key (a
negative case about the header itself) is left as drawn.
"""

import re
import uuid

import schemathesis

WELL_FORMED = re.compile(r"^[!-~]{1,128}$")


@schemathesis.hook
def map_case(context, case):
    key = case.headers.get("Idempotency-Key") if case.headers else None
    if isinstance(key, str) and WELL_FORMED.match(key):
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    return case
