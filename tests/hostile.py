"""A corpus of hostile commits: what a pushed commit may try on the machine that pushes it.

Each generator returns the files of a commit (path -> text) aimed at one way in, as the hostile
tester of issue 30 found them; the tests in test_security (lab) and in the module tests (fast)
push or plan them and assert that nothing of the pusher's machine was reached.
"""

from __future__ import annotations

from pathlib import Path


def climbing(host_dir: Path, depth: int = 30) -> str:
    """A directory name that buildx's template reader would turn into `host_dir`: `/` cannot be
    in a name, so the HCL function `replace` writes it."""
    path = "~.." * depth + str(host_dir).replace("/", "~")
    return '${replace("' + path + '","~","/")}'


def templated_context(registry: str, busybox: str, host_dir: Path, *, via: str) -> dict[str, str]:
    """An image whose context directory is named so that, read as a template, it is `host_dir`
    (via "table": [tool.multiarch.images]; "bake": a bake file's `context`)."""
    name = climbing(host_dir)
    files = {
        f"ctx/{name}/Dockerfile": f"FROM {busybox}\nCOPY . /ctx/\n",
        f"ctx/{name}/marker.txt": "from the commit\n",
    }
    head = f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{registry}"\npush = true\n'
    if via == "table":
        context = name.replace("\\", "\\\\").replace('"', '\\"')
        files["pyproject.toml"] = (
            head + '[tool.multiarch.images.evil]\ncontext = "ctx/' + context + '"\n'
            'build-args = { HARMLESS = "${HOME} %{ if true }x%{ endif }" }\n'
        )
    else:
        escaped = name.replace("${", "$${").replace('"', '\\"')
        files["pyproject.toml"] = head + 'bake = "docker-bake.hcl"\n'
        files["docker-bake.hcl"] = (
            'group "default" { targets = ["evil"] }\n'
            f'target "evil" {{\n  context = "ctx/{escaped}"\n  args = {{ HARMLESS = "$${{HOME}}" }}\n}}\n'
        )
    return files


def asks_for_host_keys(registry: str, busybox: str, host_dir: Path, salt: str) -> dict[str, str]:
    """A bake file that names the pusher's key and secret files and the host's network, and a
    table that asks for a secret from a variable of the pusher's choosing."""
    key, env = host_dir / "id_ed25519", host_dir / ".env"
    return {
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{registry}"\npush = true\n'
        'bake = "docker-bake.hcl"\n[tool.multiarch.images.evil]\nsecrets = ["id=s,env=AWS_SECRET_ACCESS_KEY"]\n',
        "docker-bake.hcl": 'group "default" { targets = ["evil"] }\n'
        f'target "evil" {{\n  context = "evil"\n  ssh = ["k={key}"]\n  secret = ["id=s,src={env}"]\n'
        '  network = "host"\n}\n',
        "evil/Dockerfile": f"FROM {busybox}\nRUN --mount=type=secret,id=s echo {salt}; cat /run/secrets/s > /got\n"
        "RUN --mount=type=ssh,id=k ls $SSH_AUTH_SOCK > /agent\n",
    }


def cache_through_symlink(registry: str, busybox: str) -> dict[str, str]:
    """A local cache inside the repository, as the path says; `.buildx-cache` is a symlink the
    test commits, to a directory of the pusher's."""
    return {
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{registry}"\n'
        'cache-to = "type=local,dest=.buildx-cache/{name},mode=max"\n'
        'cache-from = "type=local,src=.buildx-cache/{name}"\n'
        '[tool.multiarch.images.evil]\ncontext = "evil"\n',
        "evil/Dockerfile": f"FROM {busybox}\nRUN echo cached\n",
    }
