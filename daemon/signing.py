"""Signed manifests: an HMAC-SHA256, with MANIFEST_SIGNING_KEY, over a manifest's content.

Whoever can write the bucket can replace a dump together with its manifest (the sha256 a restore
checks is in the manifest). With a key the bucket never holds, such a pair carries no valid
signature: readers that know the key treat it as foreign (``daemon.manifest.scan_manifests``):
never restored, counted or deleted, and logged as tampering.

Signed is every field of the manifest's JSON object but ``offsite`` (where the upload is recorded
after the manifest was written) and the signature itself, serialised canonically (sorted keys,
no spaces). Pure functions on that object, so that the manifest module can use them.
"""

from __future__ import annotations

import hashlib
import hmac
import json

SIGNATURE_PREFIX = "hmac-sha256:"
UNSIGNED_FIELDS = frozenset({"signature", "offsite"})


def signed_content(record: dict[str, object]) -> bytes:
    content = {key: value for key, value in record.items() if key not in UNSIGNED_FIELDS}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature_of(record: dict[str, object], key: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(key, signed_content(record), hashlib.sha256).hexdigest()


def signature_problem(record: dict[str, object], key: bytes | None) -> str | None:
    """Why the manifest is not to be trusted under ``key``; None when it is (or no key is configured)."""
    if key is None:
        return None
    signature = record.get("signature")
    if not signature:
        return "it is not signed"
    if not isinstance(signature, str) or not hmac.compare_digest(signature, signature_of(record, key)):
        return "its signature does not match MANIFEST_SIGNING_KEY (altered, or signed with another key)"
    return None
