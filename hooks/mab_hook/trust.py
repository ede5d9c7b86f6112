"""What Docker trusts for a registry: the CA files and client certificates of its certs.d.

Docker reads `<certs.d>/<host:port>/` for each registry: every `*.crt` is a CA trusted on top of
the system's, every `*.cert` with the `*.key` of the same name a client certificate (a registry
that wants mTLS). The engine, which uploads, reads the daemon's directory (/etc/docker/certs.d;
rootless, ~/.config/docker/certs.d); the CLI and Docker Desktop read the client's
($DOCKER_CONFIG/certs.d). mab-hook, which talks to the same registries, trusts what they do.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from mab_hook.errors import FatalError

DAEMON_CERTS = Path("/etc/docker/certs.d")


def certs_dirs(env: Mapping[str, str]) -> tuple[Path, ...]:
    """Where Docker looks for a registry's certificates: the daemon's, a rootless daemon's, the
    client's."""
    home = Path(env.get("HOME") or Path.home())
    client = Path(env.get("DOCKER_CONFIG") or home / ".docker") / "certs.d"
    return (*daemon_dirs(env), client)


def daemon_dirs(env: Mapping[str, str]) -> tuple[Path, ...]:
    """Where an engine on this machine looks: a rootful daemon's, a rootless one's."""
    home = Path(env.get("HOME") or Path.home())
    return (DAEMON_CERTS, Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "docker" / "certs.d")


class Trust(NamedTuple):
    authorities: tuple[Path, ...] = ()  # CA files, on top of the system's
    client: tuple[Path, Path] | None = None  # certificate and key, when the registry wants mTLS


def for_host(host: str, dirs: Sequence[Path]) -> Trust:
    """What the certs.d directories hold for `host` (`registry.internal:5000`), as Docker reads
    them; a client certificate without its key is an error, as it is for Docker."""
    authorities: list[Path] = []
    client = None
    for directory in (d / host for d in dirs):
        try:
            files = sorted(path for path in directory.iterdir() if path.is_file())
        except OSError:
            continue  # none for this host here
        authorities += [path for path in files if path.suffix == ".crt"]
        for cert in (path for path in files if path.suffix == ".cert"):
            key = cert.with_suffix(".key")
            if not key.is_file():
                raise FatalError(
                    f"{cert}: a client certificate without its key ({key.name}); Docker refuses "
                    f"it too: put the key beside it, or remove it"
                )
            client = client or (cert, key)
    return Trust(tuple(authorities), client)


def context(trust: Trust, *, verify: bool) -> ssl.SSLContext:
    """A TLS context for one registry: the system's CAs and the registry's own; `verify` False
    for an insecure registry (Docker's list, loopback), whose certificate Docker does not check."""
    if verify:
        found = _as_go_verifies()
    else:  # nothing is verified: the system's CAs (20 ms to load) would go unused
        found = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        found.check_hostname = False
        found.verify_mode = ssl.CERT_NONE
    for authority in trust.authorities if verify else ():
        try:
            found.load_verify_locations(cafile=str(authority))
        except (ssl.SSLError, OSError) as e:
            raise FatalError(f"{authority}: not a CA certificate that can be read ({e})") from None
    if trust.client is not None:
        try:
            found.load_cert_chain(str(trust.client[0]), str(trust.client[1]))
        except (ssl.SSLError, OSError) as e:
            raise FatalError(f"{trust.client[0]}: a client certificate that cannot be used ({e})") from None
    return found


def pem_context(authorities: Sequence[bytes], client: tuple[bytes, bytes] | None) -> ssl.SSLContext:
    """A verifying TLS context from certificates held in memory (a builder's, which buildx
    stored): the system's CAs and these. The client key goes through a private file, as
    Python's ssl loads a certificate chain only from files, and is gone when this returns."""
    found = _as_go_verifies()
    for authority in authorities:
        try:
            found.load_verify_locations(cadata=authority.decode("ascii", "replace"))
        except ssl.SSLError as e:
            raise FatalError(
                f"a CA certificate in the builder's buildkitd.toml cannot be read ({e})"
            ) from None
    if client is not None:
        with tempfile.TemporaryDirectory(prefix="mab-hook-") as private:  # 0700
            cert, key = Path(private) / "client.cert", Path(private) / "client.key"
            for path, data in ((cert, client[0]), (key, client[1])):
                path.touch(mode=0o600)
                path.write_bytes(data)
            try:
                found.load_cert_chain(str(cert), str(key))
            except ssl.SSLError as e:
                raise FatalError(f"the builder's client certificate cannot be used ({e})") from None
    return found


def _as_go_verifies() -> ssl.SSLContext:
    """The system's CAs, checked as Go's verifier (Docker's) checks them: it takes a CA without
    key usage and a certificate without an authority key id, as company CAs often are; Python
    3.13's default (X509_STRICT) would not."""
    found = ssl.create_default_context()
    found.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return found
