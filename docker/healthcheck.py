"""Container health check: exit 0 when the server's ``GET /api/health`` answers
200, else 1. The image is slim (no curl), so it is Python's standard library.

It asks the server in the same container, on ``SIGNALING_PORT`` (default 8080),
at ``SIGNALING_HOST`` unless that is a wildcard address (then 127.0.0.1).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping

WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def health_url(environ: Mapping[str, str]) -> str:
    host = environ.get("SIGNALING_HOST", "").strip()
    if host in WILDCARDS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    port = environ.get("SIGNALING_PORT", "").strip() or "8080"
    return f"http://{host}:{port}/api/health"


def main() -> int:
    url = health_url(os.environ)
    timeout_s = float(os.environ.get("HEALTHCHECK_TIMEOUT_S") or 4)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = int(response.status)
    except (OSError, ValueError) as exc:  # refused, timed out, or 503 (HTTPError)
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
