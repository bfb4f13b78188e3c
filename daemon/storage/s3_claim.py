"""Which install owns an S3 prefix: the first instance (daemon/identity.py) that writes to a
prefix leaves ``<S3_PREFIX>/.pgbackup-instance.json`` there, and every other instance refuses
to upload to, or delete from, that prefix.

Two installs sharing a prefix would otherwise overwrite each other's copies of the same second
and expire each other's copies; a clear error on the second install is safer than any merge.
The claim is written with ``If-None-Match: *`` where the store supports it, and read back in
every case, so two installs starting at once still end with one owner.
"""

from __future__ import annotations

import json
from datetime import datetime

from botocore.exceptions import ClientError

from daemon.identity import Instance
from daemon.storage.s3 import Bucket, OffsiteError

CLAIM_NAME = ".pgbackup-instance.json"
MISSING = ("NoSuchKey", "404", "NotFound")
# Stores that do not know conditional writes answer one of these; the claim is then written
# plainly and read back.
CONDITIONAL_UNSUPPORTED = ("NotImplemented", "InvalidArgument")
ALREADY_THERE = ("PreconditionFailed", "412", "ConditionalRequestConflict")


class PrefixClaimedElsewhere(OffsiteError):
    """The S3 prefix belongs to another install."""


def claim_key(bucket: Bucket) -> str:
    return bucket.prefix + CLAIM_NAME


def read_claim(bucket: Bucket) -> dict | None:
    """The claim's content, or None when the prefix is not claimed yet."""
    try:
        body = bucket.client.get_object(Bucket=bucket.name, Key=claim_key(bucket))["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in MISSING:
            return None
        raise
    try:
        claim = json.loads(body)
        if not isinstance(claim, dict) or not isinstance(claim.get("instance"), str) or not claim["instance"]:
            raise ValueError("no instance in it")
    except ValueError as error:
        raise OffsiteError(f"s3://{bucket.name}/{claim_key(bucket)} is not a prefix claim this daemon can read "
                           f"({error}); remove it only if no other install writes to this prefix") from None
    return claim


def ensure_claimed(bucket: Bucket, instance: Instance, now: datetime) -> None:
    """Claim the prefix for ``instance`` if nobody has; raise PrefixClaimedElsewhere when
    another install has."""
    if check_claim(bucket, instance) is None and instance.name:  # without a name yet: claimed at the first upload
        _write_claim(bucket, {"instance": instance.name, "claimed_at": now.isoformat()})
        check_claim(bucket, instance)


def check_claim(bucket: Bucket, instance: Instance) -> dict | None:
    """The prefix's claim (None when there is none yet), without writing anything; raise
    PrefixClaimedElsewhere when it is another install's."""
    claim = read_claim(bucket)
    if claim is not None and not instance.owns(claim["instance"]):
        raise PrefixClaimedElsewhere(claimed_elsewhere_message(bucket, instance, claim))
    return claim


def claimed_elsewhere_message(bucket: Bucket, instance: Instance, claim: dict) -> str:
    owner = claim["instance"]
    since = f", since {claim['claimed_at']}" if claim.get("claimed_at") else ""
    this = repr(instance.name) if instance.name else "without an instance yet"
    return (
        f"s3://{bucket.name}/{bucket.prefix} belongs to the install {owner!r}{since}; this install is "
        f"{this}. Two installs must not share a prefix: give this one its own S3_PREFIX, or, "
        f"if it replaces {owner!r}, set INSTANCE_NAME={owner}"
    )


def _write_claim(bucket: Bucket, claim: dict) -> None:
    body = (json.dumps(claim, indent=2) + "\n").encode()
    request = {"Bucket": bucket.name, "Key": claim_key(bucket), "Body": body, "ContentType": "application/json"}
    try:
        bucket.client.put_object(**request, IfNoneMatch="*")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in ALREADY_THERE:
            return  # another install was first: the read-back decides
        if code not in CONDITIONAL_UNSUPPORTED:
            raise
        bucket.client.put_object(**request)
