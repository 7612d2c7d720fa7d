"""The boto3 consumer of the client matrix (e2e/clients).

One S3 client for the whole life of the process, as a service holds it,
with boto3's default credential chain (nothing configured in code): it
writes PREFIX-N to BUCKET every second, ROUNDS times or until the Unix time
UNTIL (0: no limit), and prints one JSON line per write saying when it started, which access key id signed it (empty:
sent unsigned) and the error, if any.

Usage: writer.py ENDPOINT BUCKET PREFIX ROUNDS UNTIL
"""
import datetime
import json
import sys
import time

import boto3

endpoint, bucket, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
rounds, until = int(sys.argv[4]), float(sys.argv[5])
# Debian's boto3 1.26 ignores AWS_ENDPOINT_URL: the endpoint goes in here.
s3 = boto3.client("s3", endpoint_url=endpoint)
signed = {"key": ""}


def record(request, **_):
    # before-send runs after signing, once per attempt: the last attempt wins.
    auth = request.headers.get("Authorization") or b""
    if isinstance(auth, bytes):
        auth = auth.decode()
    _, _, rest = auth.partition("Credential=")
    signed["key"] = rest.split("/", 1)[0]


s3.meta.events.register("before-send.s3", record)
i = 0
while (rounds == 0 or i < rounds) and (until == 0 or time.time() < until):
    started = datetime.datetime.now(datetime.timezone.utc)
    signed["key"] = ""
    line = {"time": started.isoformat().replace("+00:00", "Z"), "round": i}
    try:
        s3.put_object(Bucket=bucket, Key="%s-%d" % (prefix, i), Body=b"written by boto3\n")
    except Exception as e:  # every failure is a line, and the loop goes on
        line["error"] = "%s: %s" % (type(e).__name__, e)
    line["accessKeyId"] = signed["key"]
    print(json.dumps(line), flush=True)
    i += 1
    if rounds == 0 or i < rounds:
        time.sleep(max(0.0, 1 - (time.time() - started.timestamp())))
