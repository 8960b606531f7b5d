"""One of several processes moving the same alias at once; reports every move it made.

Usage: ``python lifecycle_mover.py TRACKING_URI NAME INDEX ROUNDS VERSIONS CACHE_DIR``

Connects its own ``RegistryClient``, prints ``ready``, then waits for a line on stdin so that
all movers start together. Each round promotes version ``(INDEX + round) % VERSIONS + 1`` to
``@prod`` and then rolls ``@prod`` back. Every outcome is one JSON line on stdout: the event
the call returned, or the refusal of a rollback that had nothing to go back to.
"""

from __future__ import annotations

import json
import os
import sys

from registry_sdk import RegistryClient
from registry_sdk.errors import RegistryError

NOTHING_TO_ROLL_BACK = "has no earlier version"


def report(op: str, **fields: object) -> None:
    print(json.dumps({"op": op, "pid": os.getpid(), **fields}), flush=True)


def main() -> int:
    uri, name, index, rounds, versions, cache_dir = sys.argv[1:7]
    pid = os.getpid()
    with RegistryClient(
        uri, registry_uri=uri, cache_dir=cache_dir, offline=False, timeout=60, max_retries=3
    ) as client:
        client.get_model(name)  # connect before the start line, not after
        print("ready", flush=True)
        sys.stdin.readline()
        for step in range(int(rounds)):
            target = (int(index) + step) % int(versions) + 1
            tag = f"mover {index} pid {pid} step {step}"
            event = client.promote(f"{name}/{target}", to="prod", reason=f"{tag} promote")
            report("promote", event=event.to_dict())
            try:
                event = client.rollback(name, "prod", reason=f"{tag} rollback")
            except RegistryError as exc:
                if NOTHING_TO_ROLL_BACK not in str(exc):
                    raise
                report("refused", reason=f"{tag} rollback", error=str(exc))
            else:
                report("rollback", event=event.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
