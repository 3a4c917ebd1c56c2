"""Signs HTTP requests with botocore, as real AWS clients do, for iamd's tests.

Reads a JSON object from standard input:
  {"credentials": {"access_key_id", "secret_access_key", "session_token"?},
   "requests": [{"name", "method", "url", "headers"?: {..}, "body"?: str, "service", "region",
                 "presign_expires"?: seconds, "offset_seconds"?: signing time minus now}]}
and prints one JSON object per request: {"name", "method", "path", "query", "headers": [[n, v]],
"body"}, where path and query are exactly what goes on the wire.
"""

import datetime
import json
import sys
from urllib.parse import urlsplit

import botocore.auth
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def sign(credentials, spec):
    offset = datetime.timedelta(seconds=spec.get("offset_seconds", 0))
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + offset
    botocore.auth.get_current_datetime = lambda: now
    body = spec.get("body", "").encode("utf-8")
    request = AWSRequest(
        method=spec["method"], url=spec["url"], data=body, headers=dict(spec.get("headers", {}))
    )
    service, region = spec["service"], spec["region"]
    expires = spec.get("presign_expires")
    if expires is not None:
        auth_class = S3SigV4QueryAuth if service == "s3" else SigV4QueryAuth
        auth = auth_class(credentials, service, region, expires=expires)
    else:
        auth_class = S3SigV4Auth if service == "s3" else SigV4Auth
        auth = auth_class(credentials, service, region)
    auth.add_auth(request)
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    headers = [["host", url.netloc]] + [[k, v] for k, v in prepared.headers.items()]
    return {
        "name": spec["name"],
        "method": prepared.method,
        "path": url.path or "/",
        "query": url.query,
        "headers": headers,
        "body": body.decode("utf-8"),
    }


def main():
    spec = json.load(sys.stdin)
    c = spec["credentials"]
    credentials = Credentials(c["access_key_id"], c["secret_access_key"], c.get("session_token"))
    for request in spec["requests"]:
        print(json.dumps(sign(credentials, request)))


if __name__ == "__main__":
    main()
