"""Storage backend ``dvc-s3``: the DVC-format engine with the S3 transport
(imported by :func:`cpv_plugins.dvc_s3.s3_storage` when a workspace first needs it)."""

from __future__ import annotations

from cpv_core.plugin.protocols import BackendContext
from cpv_plugins.dvc.bucket_storage import BucketStorage
from cpv_plugins.s3_settings import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, S3Settings
from cpv_plugins.transports.s3 import S3Transport


class S3Storage(BucketStorage):
    """Storage backend ``dvc-s3``: DVC's format in ``s3://{bucket}/{team}/{model}``."""

    name = "dvc-s3"

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self.settings = S3Settings(ctx.config.get_config("aws"))

    def remote_url(self) -> str:
        return f"s3://{self.settings.bucket}/{self.prefix}"

    def local_remote_options(self) -> dict[str, str]:
        s = self.settings
        options = {"profile": s.profile, "region": s.region, "connect_timeout": str(CONNECT_TIMEOUT_S), "read_timeout": str(READ_TIMEOUT_S)}
        if s.credential_path:
            options["credentialpath"] = str(s.credential_path)
        if s.endpoint_url:
            options["endpointurl"] = s.endpoint_url
        return options

    def make_transport(self) -> S3Transport:
        return S3Transport(self.settings, self.prefix)

    def wants_part_digests(self) -> bool:
        # a download checks a large object's parts on every core instead of one sequential MD5
        return True
