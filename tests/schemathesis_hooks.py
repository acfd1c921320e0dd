"""Schemathesis hooks for tests/test_schemathesis.py: sign what goes to signed operations.

Loaded by ``st run`` through ``SCHEMATHESIS_HOOKS``; the key comes from
``EDGEPAIR_TEST_KEY`` (hex). A request to an operation the document marks as signed is
signed over the exact bytes ``requests`` sends (a ``requests`` auth sees the prepared
request), so generated bodies get past the signature and into validation; an inbox file
or a backup is signed the way the Pi signs it (``X-Content-SHA256`` covered, ``sha256("")`` as the
body hash), and a positive batch's bytes are framed as one file, so batches get stored
too. Every other request is sent as generated.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import requests
import schemathesis
from schemathesis import GenerationMode

from handshake import inboxwire
from handshake.auth import sign

INBOX_FILE = "/api/v1/inbox/"
INBOX_BATCH = "/api/v1/inbox"
BACKUP = "/api/v1/backup"

# A batch of inbox files is bytes on the wire, as a file is.
schemathesis.serializer.alias(inboxwire.CONTENT_TYPE, "application/octet-stream")


class EdgePairAuth(requests.auth.AuthBase):
    """Signs a prepared request the way handshake.client does."""

    def __init__(self, key: bytes, *, frame_batch: bool = False) -> None:
        self.key = key
        self.frame_batch = frame_batch

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        method, path_qs = request.method or "GET", request.path_url
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        if self.frame_batch and path_qs == INBOX_BATCH:
            sha256 = hashlib.sha256(body).hexdigest()
            body = inboxwire.encode_batch([(f"batch/{sha256[:16]}", body, sha256)])
            request.body = body  # requests recounts Content-Length after the auth
        if method == "PUT" and path_qs.startswith((INBOX_FILE, BACKUP)):
            # A well-formed announced hash is made true, so files really get stored; a
            # malformed one is left as generated, for the 400 it must get.
            announced = request.headers.get("X-Content-SHA256", "")
            if re.fullmatch(r"[0-9a-f]{64}", announced):
                announced = hashlib.sha256(body).hexdigest()
                request.headers["X-Content-SHA256"] = announced
            request.headers["Authorization"] = sign(self.key, method, path_qs, b"",
                                                    {"x-content-sha256": announced})
        else:
            request.headers["Authorization"] = sign(self.key, method, path_qs, body)
        return request


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case,
                kwargs: dict[str, Any]) -> None:
    """Sign every request to an operation whose security names EdgePair."""
    security = case.operation.definition.raw.get(
        "security", case.operation.schema.raw_schema.get("security", []))
    # A case without the header is schemathesis probing the missing signature: left so.
    if (any("EdgePair" in requirement for requirement in security)
            and "Authorization" in (case.headers or {})):
        positive = case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE
        kwargs["auth"] = EdgePairAuth(bytes.fromhex(os.environ["EDGEPAIR_TEST_KEY"]),
                                      frame_batch=positive)
