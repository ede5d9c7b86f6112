"""A registry's token service, as Harbor, GitLab and Docker Hub run one (Docker's token auth
specification): Basic credentials in, a signed JWT scoped per repository out. docker-registry
(`auth: token`) checks the JWT's signature against the service's certificate, its issuer, its
audience, its lifetime and its `access` claims."""

from __future__ import annotations

import base64
import http.server
import json
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from tests.tls import serving

ISSUER, SERVICE = "mab-test-issuer", "mab-test-registry"
Grants = Callable[[str, str], tuple[str, ...]]  # (user, repository) -> the actions it may take


class Issued(NamedTuple):
    user: str
    scopes: tuple[str, ...]
    at: float


class TokenService(NamedTuple):
    realm: str  # http://127.0.0.1:PORT/token
    certificate: Path  # the registry's rootcertbundle
    issued: list[Issued]  # every token handed out, in order


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_key(directory: Path) -> tuple[Path, Path]:
    """An RSA key and its self-signed certificate, the registry's trust anchor for tokens."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "token.key",
                    "-out", "token.crt", "-days", "2", "-subj", "/CN=mab-test-token-signer"),
                   cwd=directory, check=True, capture_output=True)  # fmt: skip
    return directory / "token.key", directory / "token.crt"


def jwt(key: Path, certificate: Path, claims: Mapping[str, object]) -> str:
    """An RS256 JWT whose header carries the signing certificate (x5c), as the registry checks it."""
    pem = certificate.read_text()
    der = "".join(line for line in pem.splitlines() if "CERTIFICATE" not in line)
    header = {"typ": "JWT", "alg": "RS256", "x5c": [der]}
    signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = subprocess.run(("openssl", "dgst", "-sha256", "-sign", str(key)), input=signed.encode(),
                               check=True, capture_output=True).stdout  # fmt: skip
    return f"{signed}.{_b64url(signature)}"


@contextmanager
def token_service(
    directory: Path, users: Mapping[str, str], grants: Grants, *, lifetime: float = 300.0
) -> Iterator[TokenService]:
    """The service on 127.0.0.1:<free port>: a user with the right password gets a token for the
    actions `grants` allows it on each repository asked about (fewer than asked, or none, as real
    services do); wrong credentials get 401."""
    key, certificate = signing_key(directory)
    issued: list[Issued] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # Docker's token flow: Basic credentials, scopes in the query
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            self._answer(self._user(), tuple(query.get("scope", ())), query.get("service", [SERVICE])[0])

        def do_POST(self) -> None:  # the OAuth2 flow containerd (the engine's pusher) takes first
            length = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            user = form.get("username", [""])[0]
            known = user if users.get(user) == form.get("password", [None])[0] else None
            scopes = tuple(scope for field in form.get("scope", ()) for scope in field.split())
            self._answer(known, scopes, form.get("service", [SERVICE])[0])

        def _answer(self, user: str | None, scopes: tuple[str, ...], service: str) -> None:
            if user is None:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            issued.append(Issued(user, scopes, time.time()))
            now = int(time.time())
            claims = {"iss": ISSUER, "sub": user, "aud": service, "iat": now,
                      "nbf": now - 5, "exp": now + int(lifetime), "jti": uuid.uuid4().hex,
                      "access": [access for scope in scopes for access in _granted(user, scope, grants)]}  # fmt: skip
            token = jwt(key, certificate, claims)
            body = json.dumps({"token": token, "access_token": token, "expires_in": int(lifetime)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _user(self) -> str | None:
            said = self.headers.get("Authorization", "")
            if not said.startswith("Basic "):
                return None
            user, _, password = base64.b64decode(said[6:]).decode().partition(":")
            return user if users.get(user) == password else None

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield TokenService(f"http://127.0.0.1:{port}/token", certificate, issued)


def _granted(user: str, scope: str, grants: Grants) -> list[dict[str, object]]:
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if kind != "repository":
        return []
    allowed = [action for action in actions.split(",") if action in grants(user, name)]
    return [{"type": "repository", "name": name, "actions": allowed}] if allowed else []


def registry_auth(service: TokenService) -> str:
    """docker-registry's configuration for it."""
    return (f"auth:\n  token:\n    realm: {service.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
            f"    rootcertbundle: {service.certificate}\n")  # fmt: skip
