"""HTTP sessions shared by the REST backend and the uploader.

:class:`Session` is a ``requests`` session that reads the environment once per host instead
of on every request; :func:`store_session` is the session for presigned URLs of the artifact
store: none of the client's credentials, no ``.netrc``, no cookies. Imported only where HTTP
is spoken (it imports ``requests``).
"""

from __future__ import annotations

import re
import threading
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from requests.auth import AuthBase
from requests.utils import get_netrc_auth

from registry_sdk._version import __version__
from registry_sdk.errors import redact

#: A URL's query in an error message: a presigned URL's signature, never shown.
QUERY = re.compile(r"\?[^\s'\"<>)]*")
#: The User-Agent of every request this package sends.
USER_AGENT = f"registry-sdk/{__version__}"

_UNSET = object()


def scrub(text: str) -> str:
    """``text`` without credentials or URL queries (a presigned URL's query is its key)."""
    return redact(QUERY.sub("?...", text))


class NoAuth(AuthBase):
    """No credentials at all: also keeps requests from reading ``~/.netrc``."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class Session(requests.Session):
    """A ``requests`` session that reads the environment once per host.

    requests looks up the proxy variables (``HTTPS_PROXY``, ``NO_PROXY``, ...),
    ``REQUESTS_CA_BUNDLE`` and ``~/.netrc`` for every request, each time going through the
    whole environment: for a model of many small files that was a fifth of the client's work.
    This session does it on its first request to a scheme and host and keeps the answer for its
    life, so a change to those variables reaches the clients made after it. Safe from many
    threads (two threads may both look a host up once; the answers are the same).
    """

    def __init__(self, pool_size: int = DEFAULT_POOLSIZE) -> None:
        super().__init__()
        # A pool smaller than the threads using it would open and drop a connection each time.
        adapter = HTTPAdapter(pool_maxsize=max(DEFAULT_POOLSIZE, pool_size))
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self.headers["User-Agent"] = USER_AGENT
        self._lock = threading.Lock()
        self._settings: dict[tuple[object, ...], Any] = {}
        self._netrc: dict[tuple[str, str], object] = {}

    def merge_environment_settings(
        self,
        url: Any,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> Any:  # requests' own _Settings, which its stubs keep private
        """What requests answers for the first request to ``url``'s host, then the same."""
        if not self.trust_env or proxies or not isinstance(url, str):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert)
        with self._lock:
            found = self._settings.get(key)
        if found is None:
            found = super().merge_environment_settings(url, proxies, stream, verify, cert)
            with self._lock:
                self._settings[key] = found
        return {**found, "proxies": dict(found["proxies"])}

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """As requests does, with ``~/.netrc`` read once per host."""
        if self.trust_env and not request.auth and not self.auth and isinstance(request.url, str):
            parts = urlsplit(request.url)
            key = (parts.scheme, parts.netloc)
            with self._lock:
                auth = self._netrc.get(key, _UNSET)
            if auth is _UNSET:
                auth = get_netrc_auth(request.url)
                with self._lock:
                    self._netrc[key] = auth
            if auth is not None:
                request.auth = auth
            elif not (parts.username or parts.password):  # credentials in the URL still count
                request.auth = NoAuth()  # none in .netrc: requests need not look again
        return super().prepare_request(request)


def store_session(pool_size: int, *, verify: bool = True, identity: bool = False) -> Session:
    """A session for presigned URLs: no credentials, no ``.netrc``, no cookies.

    ``identity``: ask for the bytes as stored, never a compressed body (byte ranges count
    stored bytes).
    """
    session = Session(pool_size)
    session.auth = NoAuth()
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    session.verify = verify
    if identity:
        session.headers["Accept-Encoding"] = "identity"
    return session
