"""Parses a Prometheus text exposition (stdin) with prometheus_client's parser — not ours — and
prints its samples as JSON: [{"name", "labels", "value", "type", "family"}]. The metrics test
reads the platform's /metrics through it, so a malformed exposition fails there."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append(
            {
                "family": family.name,
                "type": family.type,
                "name": sample.name,
                "labels": dict(sample.labels),
                "value": sample.value,
            }
        )
json.dump(samples, sys.stdout)
