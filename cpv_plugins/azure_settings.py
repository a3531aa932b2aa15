"""The ``azure`` section of the cpv config and the client made from it: what the
``azure`` credential provider and the Azure Blob transport share, without
importing the Azure libraries until a client is made.

Secrets are named, never stored: ``connection_string_env`` and
``credential_env`` hold the *names* of environment variables."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from cpv_core.errors import ConfigError, CPVError
from cpv_plugins.endpoints import read_env_reference

CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 30
#: parallel object transfers, and blocks of one large upload in flight
TRANSFER_THREADS = 8
BLOCK_BYTES = 8 * 1024 * 1024
#: USD per GB-month of Azure Blob Hot LRS (East US, first 50 TB), the default of `cpv du --cost`
LIST_PRICE_PER_GB_MONTH = 0.018


class AzureSettings:
    """The ``azure`` section: a container, and either the name of an environment
    variable holding a connection string, or an account URL with an optional
    variable holding an account key or SAS token (else DefaultAzureCredential)."""

    def __init__(self, section: dict[str, Any] | None) -> None:
        section = section or {}
        self.container = str(section.get("container") or "")
        self.connection_string_env = section.get("connection_string_env")
        self.account_url = section.get("account_url")
        self.credential_env = section.get("credential_env")

    @property
    def where(self) -> str:
        """The blob endpoint for messages (never the key), or what names the account."""
        try:
            endpoint = self.endpoint()
        except CPVError:
            endpoint = None
        return endpoint or (f"the account of ${self.connection_string_env}" if self.connection_string_env else "Azure Blob Storage")

    def endpoint(self) -> str | None:
        """The blob endpoint URL (for reachability checks), without secrets."""
        if self.account_url:
            return str(self.account_url)
        if self.connection_string_env:
            fields = dict(
                part.split("=", 1)
                for part in read_env_reference(self.connection_string_env, "Azure connection string").split(";")
                if "=" in part
            )
            if fields.get("BlobEndpoint"):
                return fields["BlobEndpoint"]
            if fields.get("AccountName"):
                protocol = fields.get("DefaultEndpointsProtocol", "https")
                return f"{protocol}://{fields['AccountName']}.blob.{fields.get('EndpointSuffix', 'core.windows.net')}"
        return None

    def account_name(self) -> str | None:
        """The storage account's name where it shows in the account URL."""
        if not self.account_url:
            return None
        parsed = urlparse(self.account_url)
        host = parsed.hostname or ""
        if host.endswith(".blob.core.windows.net"):
            return host.split(".", 1)[0]
        return parsed.path.strip("/").split("/", 1)[0] or None  # Azurite: http://host:port/ACCOUNT

    def client(self, retries: int = 3) -> Any:
        """An ``azure.storage.blob.BlobServiceClient``: short timeouts, few retries."""
        from azure.storage.blob import BlobServiceClient

        options: dict[str, Any] = {
            "connection_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
            "retry_total": retries,
            "retry_connect": min(retries, 1),
            "max_single_put_size": BLOCK_BYTES,
            "max_block_size": BLOCK_BYTES,
            "max_single_get_size": BLOCK_BYTES,
            "max_chunk_get_size": BLOCK_BYTES,
        }
        if self.connection_string_env:
            value = read_env_reference(self.connection_string_env, "Azure connection string")
            try:
                return BlobServiceClient.from_connection_string(value, **options)
            except ValueError:
                raise ConfigError(
                    f"environment variable {self.connection_string_env} does not hold an Azure connection string (its value is not shown)",
                    fix="copy the connection string from the portal (Storage account > Access keys) into that variable",
                ) from None
        if not self.account_url:
            raise ConfigError(
                "no Azure account is configured",
                fix="run `cpv setup --storage azure --azure-container C --azure-connection-string env:NAME`",
            )
        if self.credential_env:
            credential: Any = read_env_reference(self.credential_env, "Azure account key or SAS token")
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return BlobServiceClient(self.account_url, credential=credential, **options)
