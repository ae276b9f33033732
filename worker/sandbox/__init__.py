"""A local control plane: catalogue, worker WebSocket hub and OpenAI ingress (docs/protocol.md)."""

from worker.sandbox.app import SandboxConfig, build_app, serve, worker_key_for
from worker.sandbox.hub import WorkerHub

__all__ = ["SandboxConfig", "WorkerHub", "build_app", "serve", "worker_key_for"]
