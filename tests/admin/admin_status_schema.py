"""A checker for the status document contract (docs/status.md): exactly those keys and types,
more keys allowed. Returns the list of violations so a failing test names every one of them."""

from __future__ import annotations

from typing import Any

NUMBER = (int, float)
WORKER_STATES = {"connected", "connecting", "offline", "draining"}
BACKEND_STATUSES = {"ready", "unreachable", "disabled", "error"}
CAPABILITIES = ("chat", "embeddings", "images", "transcription", "install", "uninstall")


def _is(value: Any, types: tuple[type, ...] | type, *, nullable: bool = False) -> bool:
    if value is None:
        return nullable
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        return False
    return isinstance(value, types)


def _field(errors: list[str], where: str, obj: Any, key: str, types: Any, nullable: bool = False):
    if not isinstance(obj, dict) or key not in obj:
        errors.append(f"{where}.{key} is missing")
        return None
    if not _is(obj[key], types, nullable=nullable):
        errors.append(f"{where}.{key} has the wrong type: {obj[key]!r}")
    return obj[key]


def check_status_document(doc: Any) -> list[str]:
    errors: list[str] = []
    if not isinstance(doc, dict):
        return ["the document is not an object"]
    worker = _field(errors, "$", doc, "worker", dict)
    if isinstance(worker, dict):
        state = _field(errors, "worker", worker, "state", str)
        if isinstance(state, str) and state not in WORKER_STATES:
            errors.append(f"worker.state {state!r} is not one of {sorted(WORKER_STATES)}")
        _field(errors, "worker", worker, "version", str)
        _field(errors, "worker", worker, "uptime_s", NUMBER)
        private = worker.get("private_inference")
        if private is not None:  # added with private inference; older workers leave it out
            where = "worker.private_inference"
            _field(errors, "worker", worker, "private_inference", dict)
            _field(errors, where, private, "enabled", bool)
            fingerprint = _field(errors, where, private, "fingerprint", str, nullable=True)
            if isinstance(fingerprint, str) and len(fingerprint) != 64:
                errors.append(f"{where}.fingerprint is not 64 hex digits: {fingerprint!r}")
            _field(errors, where, private, "public_key", str, nullable=True)
            for key in ("in_flight", "served", "failed", "retired_keys_held"):
                _field(errors, where, private, key, int)
    for i, backend in enumerate(_field(errors, "$", doc, "backends", list) or []):
        where = f"backends[{i}]"
        _field(errors, where, backend, "name", str)
        _field(errors, where, backend, "endpoint", str, nullable=True)
        status = _field(errors, where, backend, "status", str)
        if isinstance(status, str) and status not in BACKEND_STATUSES:
            errors.append(f"{where}.status {status!r} is not one of {sorted(BACKEND_STATUSES)}")
        capabilities = _field(errors, where, backend, "capabilities", dict)
        for name in CAPABILITIES if isinstance(capabilities, dict) else ():
            _field(errors, f"{where}.capabilities", capabilities, name, bool)
        for j, model in enumerate(_field(errors, where, backend, "models", list) or []):
            _field(errors, f"{where}.models[{j}]", model, "id", str)
            _field(errors, f"{where}.models[{j}]", model, "context_length", int, nullable=True)
    for i, gpu in enumerate(_field(errors, "$", doc, "gpus", list) or []):
        where = f"gpus[{i}]"
        _field(errors, where, gpu, "index", int)
        _field(errors, where, gpu, "name", str)
        _field(errors, where, gpu, "utilization", NUMBER, nullable=True)
        _field(errors, where, gpu, "memory_used", int, nullable=True)
        _field(errors, where, gpu, "memory_total", int, nullable=True)
        _field(errors, where, gpu, "temperature", NUMBER, nullable=True)
        _field(errors, where, gpu, "power_w", NUMBER, nullable=True)
    for i, job in enumerate(_field(errors, "$", doc, "installs", list) or []):
        where = f"installs[{i}]"
        _field(errors, where, job, "ref", str)
        _field(errors, where, job, "backend", str)
        _field(errors, where, job, "phase", str)
        _field(errors, where, job, "bytes_done", int)
        _field(errors, where, job, "bytes_total", int, nullable=True)
    requests = _field(errors, "$", doc, "requests", dict)
    if isinstance(requests, dict):
        for key in ("in_flight", "served", "failed"):
            _field(errors, "requests", requests, key, int)
    return errors
