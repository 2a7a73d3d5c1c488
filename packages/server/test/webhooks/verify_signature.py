"""Independent check of a Sluice webhook signature (the docs/webhooks.md Python snippet).

Reads {"secret", "header", "body", "now", "tolerance"} as JSON on stdin; prints "ok" or why not.
"""
import hashlib
import hmac
import json
import sys


def verify(secret: str, header: str, body: bytes, now: int, tolerance: int = 300) -> str:
    timestamp = None
    signatures = []
    for part in header.split(","):
        key, _, value = part.partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return "malformed"
    if abs(now - timestamp) > tolerance:
        return "outside the replay window"
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        return "ok"
    return "mismatch"


if __name__ == "__main__":
    given = json.load(sys.stdin)
    print(verify(given["secret"], given["header"], given["body"].encode(), int(given["now"]), int(given["tolerance"])))
