"""Image references, parsed by Docker's own rules (github.com/distribution/reference).

`127.0.0.1:5000/team/api:1.2@sha256:...` has a domain, a path, a tag and a digest. A first
part without "." or ":" (and not `localhost`) is no domain: `team/api` is Docker Hub's
`docker.io/team/api`, and `busybox` is `docker.io/library/busybox`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
API_HOSTS = {DEFAULT_DOMAIN: "registry-1.docker.io"}  # where Docker Hub's registry API answers

# distribution/reference's grammar.
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
NAME_RE = re.compile(rf"^{COMPONENT}(?:/{COMPONENT})*$")
REPOSITORY_PREFIX_RE = re.compile(rf"^{DOMAIN}(?:/{COMPONENT})*$")
TAG_RE = re.compile(rf"^{TAG}$")
_REFERENCE_RE = re.compile(rf"^(?:{DOMAIN}/)?{COMPONENT}(?:/{COMPONENT})*(?::{TAG})?(?:@{DIGEST})?$")


class Reference(NamedTuple):
    domain: str  # "docker.io" when the reference names no registry
    path: str  # "library/busybox", "team/api"
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The full name: domain and path, no tag."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar(self) -> str:
        """The name as Docker shows it: Docker Hub's domain and `library/` left out."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        return self.path.removeprefix(OFFICIAL_PREFIX)

    @property
    def context_key(self) -> str:
        """The key BuildKit looks a named context up by for this FROM reference: the familiar
        string with ":latest" trimmed. Written any other way, the key is ignored and the
        build goes to the registry instead."""
        text = (
            self.familiar + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")
        )
        return text.removesuffix(":latest")

    @property
    def api_host(self) -> str:
        return API_HOSTS.get(self.domain, self.domain)

    def with_tag(self, tag: str) -> str:
        """This repository under another tag, as a reference string."""
        return f"{self.repository}:{tag}"

    def __str__(self) -> str:
        return (
            self.repository
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def parse(text: str) -> Reference:
    """Any reference, normalized; lenient about what it cannot check (see `is_valid`)."""
    name, _, digest = text.partition("@")
    domain, remainder = _split_domain(name)
    path, tag = _split_tag(remainder)
    return Reference(domain, path, tag, digest or None)


def split(text: str) -> tuple[str, str | None]:
    """A reference as written, without its digest, and its tag: ('host:5000/team/api', '1.2')."""
    name = text.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


def names_registry(first: str) -> bool:
    """Docker's rule: the first part of a name is a registry when it has "." or ":" in it, is
    `localhost`, or has capitals (which repository paths cannot)."""
    return "." in first or ":" in first or first == "localhost" or first.lower() != first


def is_valid(text: str) -> bool:
    return bool(_REFERENCE_RE.match(text))


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not slash or not names_registry(first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def _split_tag(remainder: str) -> tuple[str, str | None]:
    path, colon, tag = remainder.rpartition(":")
    if not colon or "/" in tag:
        return remainder, None
    return path, tag
