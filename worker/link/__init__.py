"""The worker's link to the control plane (protocol: ``docs/protocol.md``)."""

from worker.link.client import LinkClient, LinkState
from worker.link.errors import AuthRejected, UpgradeRequired
from worker.link.verify import VerifyResult, verify_key

__all__ = [
    "AuthRejected",
    "LinkClient",
    "LinkState",
    "UpgradeRequired",
    "VerifyResult",
    "verify_key",
]
