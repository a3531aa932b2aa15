"""The ``aws`` section of the cpv config and its defaults: what the ``aws``
credential provider and the S3 transport share, without the transport (so the
plugin's start-up imports neither it nor boto3)."""

from __future__ import annotations

import functools
from typing import Any

DEFAULT_BUCKET = "vmo-model-checkpoints"
DEFAULT_REGION = "us-east-1"
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 20
#: parallel part transfers (the client's connection pool is sized for them)
TRANSFER_THREADS = 8
#: requests in flight for many small objects: boto3's best for 5 000 small GETs here was 32
SMALL_OBJECT_THREADS = 32


class S3Settings:
    """The ``aws`` section of the cpv config, with defaults."""

    def __init__(self, section: dict[str, Any] | None) -> None:
        section = section or {}
        self.credential_path = section.get("credential_path")
        self.profile = section.get("profile") or "default"
        self.bucket = section.get("bucket") or DEFAULT_BUCKET
        self.endpoint_url = section.get("endpoint_url")
        self.region = section.get("region") or DEFAULT_REGION

    @property
    def where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    def client(self, retries: int = 1) -> Any:
        """A boto3 S3 client: short timeouts; one attempt for checks, a few for transfers."""
        import boto3
        import botocore.session
        from botocore.config import Config

        core = botocore.session.Session()
        core.register_component("data_loader", _shared_loader())  # a second client then costs 10 ms, not 65
        if self.credential_path:
            core.set_config_variable("credentials_file", str(self.credential_path))
        core.set_config_variable("profile", self.profile)
        session = boto3.Session(botocore_session=core)
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=Config(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"max_attempts": retries, "mode": "standard"},
                max_pool_connections=SMALL_OBJECT_THREADS + TRANSFER_THREADS,
            ),
        )


@functools.cache
def _shared_loader() -> Any:
    """botocore's loader of its service models, shared by every client of this process: the
    models are read once. Sessions stay separate, so credentials are read afresh for each client."""
    import botocore.loaders

    return botocore.loaders.create_loader()
