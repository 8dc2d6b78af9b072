"""The container HEALTHCHECK: is edgecorn answering HTTP on its own port?

Asks HEALTHCHECK_URL (default https://127.0.0.1:443/healthz) without verifying the
certificate (it is issued for the public name, and this only asks whether the server
answers). Healthy (exit 0) when any response below 500 comes back, unhealthy (exit 1)
when the connection fails, times out or the answer is a 5xx. Standard library only.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

URL = os.environ.get("HEALTHCHECK_URL", "https://127.0.0.1:443/healthz")


def main() -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(URL, timeout=3, context=context) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        print(f"unhealthy: {URL}: {error}", file=sys.stderr)
        return 1
    if status >= 500:
        print(f"unhealthy: {URL}: status {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
