"""Schemathesis hooks for checks/schemathesis.sh: how to send the bodies of
the gateway's media types that schemathesis does not know. An online import
of records takes JSON Lines (application/x-ndjson): the generated value is
sent as text, one line per item when it is a list."""
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in value).encode()
    return (json.dumps(value, ensure_ascii=False) + "\n").encode()
