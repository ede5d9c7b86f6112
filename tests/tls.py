"""A private CA, as a company has one: its certificate, a server certificate for an address and
a client certificate, made with openssl; and a small HTTPS registry stand-in that presents them."""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from mab_hook import trust


class Certs(NamedTuple):
    ca: Path
    server: tuple[Path, Path]  # certificate, key
    client: tuple[Path, Path]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(("openssl", *args), cwd=cwd, check=True, capture_output=True)


def _signed(directory: Path, name: str, extension: str) -> tuple[Path, Path]:
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory
    )
    (directory / f"{name}.ext").write_text(extension + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)  # fmt: skip
    return directory / f"{name}.crt", directory / f"{name}.key"


def make_ca(directory: Path, address: str) -> Certs:
    """A CA, a server certificate for `address` (an IP) and a client certificate it signed."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=mab-hook test CA", cwd=directory)  # fmt: skip
    server = _signed(directory, "server", f"subjectAltName=IP:{address}")
    client = _signed(directory, "client", "extendedKeyUsage=clientAuth")
    return Certs(directory / "ca.crt", server, client)


def outward_address() -> str | None:
    """This machine's address on its network (not loopback, which Docker treats as insecure);
    None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: only the route is looked up
        except OSError:
            return None
        found = str(probe.getsockname()[0])
    return None if found.startswith("127.") else found


class _V2(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    """A test server running in a thread of its own until the block ends; yields its port."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def http_registry(address: str) -> Iterator[str]:
    """A server answering /v2/ over plain HTTP. Yields `address:port`."""
    with serving(http.server.ThreadingHTTPServer((address, 0), _V2)) as port:
        yield f"{address}:{port}"


@contextmanager
def https_registry(certs: Certs, address: str, *, client_auth: bool = False) -> Iterator[str]:
    """A server answering /v2/ over TLS with the CA's server certificate; `client_auth`: it wants
    a client certificate the CA signed (mTLS). Yields `address:port`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs.server[0]), str(certs.server[1]))
    if client_auth:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(certs.ca))
    server = http.server.ThreadingHTTPServer((address, 0), _V2)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server) as port:
        yield f"{address}:{port}"


def placed(certs: Certs, certs_d: Path, host: str, *, client: bool = False) -> Path:
    """The CA (and the client certificate) where Docker looks for `host`'s."""
    (certs_d / host).mkdir(parents=True, exist_ok=True)
    shutil.copy(certs.ca, certs_d / host / "ca.crt")
    if client:
        shutil.copy(certs.client[0], certs_d / host / "client.cert")
        shutil.copy(certs.client[1], certs_d / host / "client.key")
    return certs_d


@contextmanager
def engine_trusts(certs: Certs, host: str, *, client: bool = False) -> Iterator[None]:
    """The CA (and client certificate) in the engine's certs.d, which is machine-wide: only
    `host`'s directory is made, and it (with certs.d itself, if this made it) is gone after."""
    daemon = trust.DAEMON_CERTS
    made = not daemon.exists()
    try:
        placed(certs, daemon, host, client=client)
        yield
    finally:
        shutil.rmtree(daemon / host, ignore_errors=True)
        if made:
            shutil.rmtree(daemon, ignore_errors=True)
