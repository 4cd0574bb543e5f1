"""Real S3 clients against `cairn gateway`, run by app-cli/tests/gateway.rs.

Usage: gateway_clients.py MODE  (MODE: write-parquet, full, degraded, anonymous,
private)
Environment: ENDPOINT (http://127.0.0.1:PORT), BUCKET (dataset id), ALIAS,
PRIVATE_BUCKET (the same files uploaded with --encrypt),
ACCESS_KEY, SECRET_KEY, DATA_DIR (the uploaded directory), EXPECTED (a JSON
file: key -> {size, blake3}), METRICS (http://127.0.0.1:PORT/metrics).
Every check is an assert; the script prints one line per passed step.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

MODE = sys.argv[1]
DATA_DIR = os.environ["DATA_DIR"]


def write_parquet():
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 5000
    table = pa.table(
        {
            "id": pa.array(range(n), type=pa.int64()),
            "label": pa.array([f"item-{i % 97}" for i in range(n)]),
            "score": pa.array([i * 0.25 for i in range(n)], type=pa.float64()),
        }
    )
    os.makedirs(os.path.join(DATA_DIR, "tables"), exist_ok=True)
    pq.write_table(table, os.path.join(DATA_DIR, "tables", "part-0.parquet"), row_group_size=1000)
    print("wrote parquet")


if MODE == "write-parquet":
    write_parquet()
    sys.exit(0)

import boto3  # noqa: E402
import botocore  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

ENDPOINT = os.environ["ENDPOINT"]
BUCKET = os.environ["BUCKET"]
ALIAS = os.environ.get("ALIAS", "")
EXPECTED = json.load(open(os.environ["EXPECTED"]))
KEYS = sorted(EXPECTED, key=lambda k: k.encode())


def client(secret=None, unsigned=False):
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    if unsigned:
        cfg = cfg.merge(Config(signature_version=botocore.UNSIGNED))
        return boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", config=cfg)
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=os.environ["ACCESS_KEY"],
        aws_secret_access_key=secret or os.environ["SECRET_KEY"],
        config=cfg,
    )


def local(key):
    with open(os.path.join(DATA_DIR, key), "rb") as f:
        return f.read()


def error_of(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("the call succeeded")


def reads(s3, bucket):
    """Full and ranged GETs equal the uploaded bytes."""
    for key in KEYS:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == local(key), key
    big = "data/big.bin"
    want = local(big)
    size = len(want)
    for header, lo, hi in [
        ("bytes=0-0", 0, 1),
        ("bytes=100-65635", 100, 65636),
        (f"bytes={size - 1000}-", size - 1000, size),
        ("bytes=-777", size - 777, size),
        (f"bytes=1048570-{2 * 1048576 + 5}", 1048570, 2 * 1048576 + 6),
    ]:
        r = s3.get_object(Bucket=bucket, Key=big, Range=header)
        got = r["Body"].read()
        assert got == want[lo:hi], header
        assert r["ContentRange"] == f"bytes {lo}-{hi - 1}/{size}", r["ContentRange"]
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    print("get: full and ranged reads byte-exact")


def full():
    s3 = client()
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert BUCKET in names and ALIAS in names, names
    print("list_buckets:", len(names))

    listed = s3.list_objects_v2(Bucket=BUCKET)
    assert [o["Key"] for o in listed["Contents"]] == KEYS, listed["Contents"]
    for o in listed["Contents"]:
        assert o["Size"] == EXPECTED[o["Key"]]["size"], o
        assert o["ETag"] == '"%s"' % EXPECTED[o["Key"]]["blake3"], o
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=ALIAS)["Contents"]] == KEYS
    under = s3.list_objects_v2(Bucket=BUCKET, Prefix="data/")
    assert [o["Key"] for o in under["Contents"]] == [k for k in KEYS if k.startswith("data/")]
    top = s3.list_objects_v2(Bucket=BUCKET, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == sorted(
        {k.split("/")[0] + "/" for k in KEYS if "/" in k}
    ), top["CommonPrefixes"]
    assert [o["Key"] for o in top["Contents"]] == [k for k in KEYS if "/" not in k]
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, PaginationConfig={"PageSize": 3})
    )
    assert len(pages) == (len(KEYS) + 2) // 3, len(pages)
    assert all(p["KeyCount"] <= 3 for p in pages)
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == KEYS
    deep = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix="data/", Delimiter="/", PaginationConfig={"PageSize": 1}
        )
    )
    assert [o["Key"] for p in deep for o in p.get("Contents", [])] == [
        k for k in KEYS if k.startswith("data/") and "/" not in k[5:]
    ]
    assert [c["Prefix"] for p in deep for c in p.get("CommonPrefixes", [])] == ["data/sub/"]
    print("list_objects_v2: prefix, delimiter and pages of 3 and 1")

    for key in KEYS:
        h = s3.head_object(Bucket=BUCKET, Key=key)
        assert h["ContentLength"] == EXPECTED[key]["size"], (key, h)
        assert h["ETag"] == '"%s"' % EXPECTED[key]["blake3"], (key, h)
        assert "LastModified" in h, h
    print("head_object: sizes and BLAKE3 etags")

    reads(s3, BUCKET)

    assert error_of(lambda: s3.get_object(Bucket=BUCKET, Key="no/such/key")) == ("NoSuchKey", 404)
    assert error_of(lambda: s3.head_object(Bucket=BUCKET, Key="nope"))[1] == 404
    assert error_of(lambda: s3.list_objects_v2(Bucket="f" * 64))[0] == "NoSuchBucket"
    assert error_of(lambda: s3.list_objects_v2(Bucket="no-such-alias"))[0] == "NoSuchBucket"
    size = EXPECTED["data/big.bin"]["size"]
    assert error_of(
        lambda: s3.get_object(Bucket=BUCKET, Key="data/big.bin", Range=f"bytes={size}-")
    ) == ("InvalidRange", 416)
    assert error_of(lambda: s3.put_object(Bucket=BUCKET, Key="new", Body=b"x")) == (
        "NotImplemented",
        501,
    )
    assert error_of(lambda: s3.delete_object(Bucket=BUCKET, Key=KEYS[0]))[0] == "NotImplemented"
    code, status = error_of(lambda: client(secret="not-the-secret").list_objects_v2(Bucket=BUCKET))
    assert code == "SignatureDoesNotMatch" and status == 403, (code, status)
    code, status = error_of(lambda: client(unsigned=True).list_objects_v2(Bucket=BUCKET))
    assert code == "AccessDenied" and status == 403, (code, status)
    print("errors: NoSuchKey, NoSuchBucket, InvalidRange 416, NotImplemented, bad signature, unsigned")

    import pyarrow.fs
    import pyarrow.parquet as pq

    fs = pyarrow.fs.S3FileSystem(
        access_key=os.environ["ACCESS_KEY"],
        secret_key=os.environ["SECRET_KEY"],
        endpoint_override=ENDPOINT.removeprefix("http://"),
        scheme="http",
        region="us-east-1",
    )
    remote = pq.read_table(f"{BUCKET}/tables/part-0.parquet", filesystem=fs)
    assert remote.equals(pq.read_table(os.path.join(DATA_DIR, "tables", "part-0.parquet")))
    assert remote.num_rows == 5000
    info = fs.get_file_info(f"{BUCKET}/data/big.bin")
    assert info.size == EXPECTED["data/big.bin"]["size"]
    print("pyarrow: parquet table equal,", remote.num_rows, "rows")

    aws = shutil.which("aws", path=os.path.dirname(sys.executable))
    if aws is None:
        print("aws cli: not installed in the venv, skipped")
    else:
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID=os.environ["ACCESS_KEY"],
            AWS_SECRET_ACCESS_KEY=os.environ["SECRET_KEY"],
            AWS_DEFAULT_REGION="us-east-1",
        )
        ls = subprocess.run(
            [aws, "s3", "ls", f"s3://{BUCKET}/data/", "--endpoint-url", ENDPOINT],
            env=env, capture_output=True, text=True,
        )
        assert ls.returncode == 0, ls.stderr
        assert "big.bin" in ls.stdout and "sub/" in ls.stdout, ls.stdout
        with tempfile.TemporaryDirectory() as d:
            cp = subprocess.run(
                [aws, "s3", "cp", f"s3://{BUCKET}/data/big.bin", os.path.join(d, "big.bin"),
                 "--endpoint-url", ENDPOINT],
                env=env, capture_output=True, text=True,
            )
            assert cp.returncode == 0, cp.stderr
            assert open(os.path.join(d, "big.bin"), "rb").read() == local("data/big.bin")
        print("aws cli: s3 ls and s3 cp byte-exact")

    metrics = urllib.request.urlopen(os.environ["METRICS"]).read().decode()
    assert 'cairn_gateway_requests_total{operation="GetObject",status="200"}' in metrics, metrics
    assert 'operation="GetObject",status="206"' in metrics, metrics
    assert 'operation="PutObject",status="501"' in metrics, metrics
    served = [l for l in metrics.splitlines() if l.startswith("cairn_gateway_bytes_served_total")]
    assert served and int(float(served[0].split()[-1])) > 0, served
    assert "cairn_gateway_range_read_seconds_count" in metrics, metrics
    print("metrics: requests by operation and status, bytes served, range latency")


def degraded():
    reads(client(), BUCKET)
    print("degraded: reads byte-exact with two nodes down")


def anonymous():
    s3 = client(unsigned=True)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == KEYS
    assert s3.get_object(Bucket=BUCKET, Key="a.txt")["Body"].read() == local("a.txt")
    print("anonymous: unsigned list and get")
    try:
        s3.get_object(Bucket=os.environ["PRIVATE_BUCKET"], Key="a.txt")
        raise AssertionError("a private dataset was served without its key")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "AccessDenied", e.response
        assert "key" in e.response["Error"]["Message"], e.response
    print("anonymous: a private dataset without its key is AccessDenied")


def private():
    s3 = client(unsigned=True)
    bucket = os.environ["PRIVATE_BUCKET"]
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == KEYS, listed
    assert [o["Size"] for o in listed] == [EXPECTED[k]["size"] for k in KEYS], listed
    reads(s3, bucket)
    print("private: plaintext names, sizes, whole and range reads with the key")


{"full": full, "degraded": degraded, "anonymous": anonymous, "private": private}[MODE]()
