"""Canonical JSON and its SHA-256 digest: the text that plan fingerprints and isolation
keys are hashed over, the same in every process, Python version and dict order."""

from __future__ import annotations

from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no whitespace and only ASCII: the text keys are hashed over."""
    import json  # here: importing greenres.plan should not cost a JSON encoder

    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def digest(value: Any, length: int) -> str:
    """The first ``length`` hex characters of SHA-256 over :func:`canonical_json`."""
    import hashlib  # here: OpenSSL is slow to load, and only fingerprints and keys need it

    return hashlib.sha256(canonical_json(value).encode("ascii")).hexdigest()[:length]
