"""The control plane's side of private inference, as the sandbox implements it.

The sandbox holds no workload private key and never opens an envelope. It keeps the public keys
each connected worker registered over its authenticated link, serves them to clients at
``GET /v1/private-inference/key``, and routes a sealed request to a worker that holds one of the
keys it was sealed to — preferring, for a conversation's ``affinity_key``, the worker that served it
before (its KV cache is warm there). When no connected worker holds any of them it answers with
``X-Pendra-Error-Code: no_private_inference_worker``, which tells the SDK to fetch the keys again.
"""

from __future__ import annotations

import hmac
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from worker.private_inference.wire import (
    ENVELOPE_KEY,
    ERROR_CODE_HEADER,
    NO_WORKER_ERROR_CODE,
    OUTER_FIELDS,
    TASK_TYPES,
    EnvelopeError,
    b64decode,
    fingerprint,
    parse_envelope,
)
from worker.protocol import ErrorFrame, WorkloadKeys, WorkloadKeysAck

if TYPE_CHECKING:
    from worker.sandbox.hub import WorkerConnection, WorkerHub

log = logging.getLogger(__name__)

KEYS_PATH = "/v1/private-inference/key"
AFFINITY_ENTRIES = 10_000
"""Conversations remembered for affinity; the least recently used are forgotten first."""
WORKER_PIN_HEADER = "X-Pendra-Worker-Id"


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": code, "code": code, "param": None}}
    return web.json_response(body, status=status, headers=headers)


def no_worker(message: str) -> web.Response:
    return error(503, NO_WORKER_ERROR_CODE, message, {ERROR_CODE_HEADER: NO_WORKER_ERROR_CODE})


def register_keys(connection: WorkerConnection, frame: WorkloadKeys) -> str:
    """Replace ``connection``'s workload keys with ``frame``'s; the frame to answer with.

    Each kid is recomputed from its key (a claimed kid is never trusted), so a worker cannot
    register a key under someone else's fingerprint.
    """
    keys: dict[str, str] = {}
    for info in frame.keys:
        try:
            raw = b64decode(info.public_key, "public_key")
        except EnvelopeError:
            raw = b""
        if len(raw) != 32 or not hmac.compare_digest(fingerprint(raw), info.kid):
            return ErrorFrame(
                code="invalid_workload_key",
                message=f"workload key {info.kid[:16]}… does not match its public key",
            ).dump()
        keys[info.kid] = info.public_key
    connection.workload_keys = keys
    log.info(
        "worker %s registered %d workload key(s): %s",
        connection.worker_id,
        len(keys),
        ", ".join(kid[:16] for kid in keys) or "none",
    )
    return WorkloadKeysAck(seq=frame.seq).dump()


class PrivateRelay:
    def __init__(self, hub: WorkerHub) -> None:
        self.hub = hub
        self._affinity: OrderedDict[str, str] = OrderedDict()

    # -- keys ------------------------------------------------------------------------------------
    def published_keys(self) -> list[dict[str, Any]]:
        """The workload keys of connected, non-draining workers (one entry per key)."""
        found: dict[str, dict[str, Any]] = {}
        for worker in self.hub.workers.values():
            if worker.draining:
                continue
            for kid, public_key in worker.workload_keys.items():
                entry = found.setdefault(kid, {"kid": kid, "public_key": public_key, "workers": 0})
                entry["workers"] += 1
        return sorted(found.values(), key=lambda k: k["kid"])

    async def handle_keys(self, _request: web.Request) -> web.Response:
        keys = self.published_keys()
        if not keys:
            return web.json_response(
                {
                    "detail": "No connected worker has registered a private-inference key with "
                    "this sandbox: start a worker (pendra --no-ui) with APP_SERVER_WS_URL pointing "
                    "here, and leave private inference on."
                },
                status=404,
            )
        return web.json_response({"keys": keys})

    # -- routing ---------------------------------------------------------------------------------
    def check(self, kind: str, body: dict[str, Any]) -> web.Response | None:
        """The 400 for a sealed request the relay cannot pass on; None when it can."""
        if kind not in TASK_TYPES:
            return error(400, "invalid_request_error", f"Private inference does not cover {kind}.")
        extra = sorted(set(body) - OUTER_FIELDS)
        if extra:
            return error(
                400,
                "invalid_request_error",
                f"A private request carries only model, stream and {ENVELOPE_KEY} in the clear; "
                f"'{extra[0]}' must go inside the sealed body.",
            )
        stream = body.get("stream", False)
        if not isinstance(stream, bool) or (stream and kind != "chat"):
            return error(400, "invalid_request_error", "'stream' must be a boolean (chat only).")
        try:
            parse_envelope(body[ENVELOPE_KEY])
        except EnvelopeError as exc:
            return error(400, "invalid_request_error", str(exc))
        return None

    def choose(self, request: web.Request, body: dict[str, Any]) -> WorkerConnection | web.Response:
        """The worker for a sealed request (well-formed: :meth:`check` passed)."""
        envelope = parse_envelope(body[ENVELOPE_KEY])
        model = body["model"]
        holders = [
            w
            for w in self.hub.workers.values()
            if not w.draining and envelope.kids & w.workload_keys.keys()
        ]
        if not holders:
            return no_worker(
                "No connected worker holds a key this request was sealed to; fetch the "
                "workload keys again (GET /v1/private-inference/key) and resend."
            )
        serving = [w for w in holders if w.serves(model)]
        pinned = request.headers.get(WORKER_PIN_HEADER)
        if pinned:
            serving = [w for w in serving if w.worker_id == pinned]
        if not serving:
            where = f"worker {pinned}" if pinned else "no worker holding its key"
            known = any(w.serves(model) for w in self.hub.workers.values())
            return error(
                503 if known or pinned else 404,
                "no_worker" if known or pinned else "model_not_found",
                f"{model!r} cannot be served privately right now: {where} serves it.",
            )
        affinity = envelope.affinity_key
        if affinity is not None:
            remembered = self._affinity.get(affinity)
            for worker in serving:
                if worker.worker_id == remembered:
                    self._affinity.move_to_end(affinity)
                    return worker
        # A worker with a free slot first: one at its max_concurrent would answer worker_busy.
        worker = min(serving, key=lambda w: (not w.has_room, w.in_flight, w.load.in_flight))
        if affinity is not None:
            self._affinity[affinity] = worker.worker_id
            self._affinity.move_to_end(affinity)
            while len(self._affinity) > AFFINITY_ENTRIES:
                self._affinity.popitem(last=False)
        return worker


def sealed_error(frame: ErrorFrame) -> dict[str, str] | None:
    """Extra headers for a worker's error on a sealed request (the SDK's re-key signal)."""
    if frame.code == NO_WORKER_ERROR_CODE:
        return {ERROR_CODE_HEADER: NO_WORKER_ERROR_CODE}
    return None
