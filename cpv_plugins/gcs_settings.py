"""The ``gcs`` section of the cpv config and the client made from it: what the
``gcs`` credential provider and the GCS transport share, without importing the
Google libraries until a client is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cpv_core.errors import CredentialError
from cpv_core.trust import open_regular

#: seconds to connect and to wait for an answer, for every call
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 30
#: parallel object transfers (the HTTP connection pool is sized for them)
TRANSFER_THREADS = 8
#: a resumable upload sends (and holds in memory) this much at a time: 8 threads x 16 MiB
UPLOAD_CHUNK = 16 * 1024 * 1024
MAX_CREDENTIALS_BYTES = 1024 * 1024
#: USD per GB-month of GCS Standard storage in a single region (us-central1), the default of `cpv du --cost`
LIST_PRICE_PER_GB_MONTH = 0.020


class GcsSettings:
    """The ``gcs`` section: bucket, optional endpoint (an emulator or a private
    endpoint), optional credentials file (a service-account or authorized-user JSON,
    by path) and project."""

    def __init__(self, section: dict[str, Any] | None) -> None:
        section = section or {}
        self.bucket = str(section.get("bucket") or "")
        self.endpoint_url = section.get("endpoint_url")
        self.credentials_path = section.get("credentials_path")
        self.project = section.get("project")

    @property
    def where(self) -> str:
        return self.endpoint_url or "Google Cloud Storage"

    def credentials(self) -> Any:
        """The credentials the client uses: the configured file; anonymous for an endpoint
        without one (an emulator); else Application Default Credentials."""
        import google.auth
        from google.auth.credentials import AnonymousCredentials

        if self.credentials_path:
            return load_credentials_file(Path(self.credentials_path))
        if self.endpoint_url:
            return AnonymousCredentials()  # type: ignore[no-untyped-call]
        try:
            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
        except google.auth.exceptions.DefaultCredentialsError:
            raise CredentialError(
                "no Google Cloud credentials were found (no credentials file configured, no Application Default Credentials)",
                fix="run `gcloud auth application-default login`, or `cpv setup --storage gcs --gcs-credentials PATH` with a service-account key file",
            ) from None
        return credentials

    def client(self) -> Any:
        """A ``google.cloud.storage`` client with a connection pool for the transfer threads."""
        import requests.adapters
        from google.auth.transport.requests import AuthorizedSession
        from google.cloud import storage

        credentials = self.credentials()
        http = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
        adapter = requests.adapters.HTTPAdapter(pool_connections=TRANSFER_THREADS, pool_maxsize=TRANSFER_THREADS * 2)
        http.mount("https://", adapter)
        http.mount("http://", adapter)
        options = {"api_endpoint": self.endpoint_url} if self.endpoint_url else None
        return storage.Client(project=self.project or "cpv", credentials=credentials, client_options=options, _http=http)


def load_credentials_file(path: Path) -> Any:
    """Credentials from a Google JSON key file (service account or authorized user);
    a missing, oversized or malformed file is a one-line error naming it."""
    import json

    import google.auth
    import google.auth.exceptions

    fix = (
        "pass the path of a service-account key (JSON) from the Google Cloud console, or of `gcloud auth application-default login`'s file"
    )
    try:
        with open_regular(path) as handle:
            raw = handle.read(MAX_CREDENTIALS_BYTES + 1)
        if len(raw) > MAX_CREDENTIALS_BYTES:
            raise CredentialError(f"Google credentials file {path} is larger than 1 MiB", fix=fix)
        info = json.loads(raw)
        if not isinstance(info, dict) or not isinstance(info.get("type"), str):
            raise CredentialError(f'Google credentials file {path} is not a key file (no "type")', fix=fix)
        credentials, _ = google.auth.load_credentials_from_dict(  # type: ignore[no-untyped-call]
            info, scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
        )
    except FileNotFoundError:
        raise CredentialError(f"Google credentials file {path} does not exist", fix=fix) from None
    except (OSError, ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise CredentialError(f"Google credentials file {path} is unusable: {type(exc).__name__}", fix=fix) from None
    return credentials
