"""Private inference: requests sealed by the client to this worker's workload key.

The control plane relays them without being able to read them; the worker opens them, serves them
through the normal router and backends, and seals the reply to the client. Design and wire format:
docs/private-inference.md. The modules: ``wire`` (shared names and shapes, no crypto; the sandbox
uses it too), ``workload_key`` (the key file), ``keyring`` (current and retired keys), ``envelope``
(HPKE open and reply sealing), ``serve`` (one sealed request end to end), ``link`` (per link
session) and ``service`` (the worker's counters and status).
"""
