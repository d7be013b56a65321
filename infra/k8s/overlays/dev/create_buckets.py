"""Create the S3 buckets that the given s3:// URIs name, if missing (the dev overlay's faceops-create-buckets Job).

Usage: python create_buckets.py s3://bucket/prefix [s3://...]. The endpoint and credentials come from boto3's
environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Exits non-zero, naming the endpoint,
when the store cannot be reached, so the Job retries until MinIO is up.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError


def buckets(uris: list[str]) -> list[str]:
    """The distinct bucket names of the s3:// URIs (anything else is refused)."""
    names = []
    for uri in uris:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise SystemExit(f"not an s3://bucket/... URI: {uri!r}")
        if parsed.netloc not in names:
            names.append(parsed.netloc)
    return names


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit("usage: create_buckets.py s3://bucket/prefix [s3://...]")
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "AWS's own endpoint")
    s3 = boto3.client("s3")
    for name in buckets(argv):
        try:
            s3.head_bucket(Bucket=name)
            print(f"bucket {name} exists at {endpoint}")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise SystemExit(f"bucket {name} at {endpoint}: {exc}") from exc
            s3.create_bucket(Bucket=name)
            print(f"bucket {name} created at {endpoint}")
        except BotoCoreError as exc:
            raise SystemExit(f"cannot reach the S3 endpoint {endpoint}: {exc}") from exc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
