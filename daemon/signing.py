"""Signed manifests: an HMAC-SHA256, with MANIFEST_SIGNING_KEY, over a manifest's content.

Whoever can write the bucket can replace a dump together with its manifest (the sha256 a restore
checks is in the manifest). With a key the bucket never holds, such a pair carries no valid
signature: readers that know the key treat it as foreign (``signature_problem``): never restored,
counted or deleted, and reported as tampering.

Signed is every field but ``offsite`` (where the upload is recorded after the manifest was
written) and the signature itself, serialised canonically (sorted keys, no spaces).
"""

from __future__ import annotations

import hashlib
import hmac
import json

from daemon.manifest import Manifest

SIGNATURE_PREFIX = "hmac-sha256:"
UNSIGNED_FIELDS = frozenset({"signature", "offsite"})


def signed_content(manifest: Manifest) -> bytes:
    record = {key: value for key, value in manifest.record().items() if key not in UNSIGNED_FIELDS}
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature_of(manifest: Manifest, key: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(key, signed_content(manifest), hashlib.sha256).hexdigest()


def sign(manifest: Manifest, key: bytes | None) -> None:
    """Set the manifest's signature (nothing without a key)."""
    if key is not None:
        manifest.signature = signature_of(manifest, key)


def signature_problem(manifest: Manifest, key: bytes | None) -> str | None:
    """Why the manifest is not to be trusted under ``key``; None when it is (or no key is configured)."""
    if key is None:
        return None
    if not manifest.signature:
        return "it is not signed"
    if not hmac.compare_digest(manifest.signature, signature_of(manifest, key)):
        return "its signature does not match MANIFEST_SIGNING_KEY (altered, or signed with another key)"
    return None
