"""Reading ``GET /metrics`` as Prometheus does: the text format, parsed by prometheus_client's own
parser, into ``{(sample name, frozenset of label pairs): value}``."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str, timeout: float = 10) -> Samples:
    """Every sample of ``<base_url>/metrics`` (a 200 answer is asserted)."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=timeout) as response:  # noqa: S310 - test server
        assert response.status == 200, response.status
        assert response.headers["Content-Type"].startswith("text/plain"), response.headers["Content-Type"]
        return parse(response.read().decode())


def parse(text: str) -> Samples:
    """The samples of an exposition ``text``."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: Any) -> float:
    """The sample ``name`` with exactly ``labels`` (0 when absent: a counter not yet incremented)."""
    return samples.get((name, frozenset((key, str(val)) for key, val in labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: Any) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (e.g. over every ``pid``)."""
    wanted = {(key, str(val)) for key, val in labels.items()}
    return sum(v for (sample, pairs), v in samples.items() if sample == name and wanted <= pairs)


def labels_of(samples: Samples, name: str, label: str) -> set[str]:
    """The values of ``label`` among the samples ``name``."""
    return {dict(pairs)[label] for (sample, pairs) in samples if sample == name and label in dict(pairs)}
