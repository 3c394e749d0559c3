"""A real local S3-compatible server for tests: moto's server mode on 127.0.0.1:8112, in this process's thread."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

S3_PORT = 8112
KEY_ID = "huiqi-test-key"
SECRET = "huiqi-test-secret-do-not-log"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    access_key_id: str = KEY_ID
    secret_access_key: str = SECRET


def _port() -> int:
    """Return S3_PORT, or a free port when it is taken (another xdist worker's server)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", S3_PORT))
            return S3_PORT
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_s3(bucket: str = "huiqi-attachments") -> Iterator[S3Server]:
    """Start moto's S3 server, make the bucket, and stop the server afterwards."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = _port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )
        client.create_bucket(Bucket=bucket)
        yield S3Server(endpoint_url=endpoint, bucket=bucket)
    finally:
        server.stop()
