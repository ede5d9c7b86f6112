"""Images of a repository that declares none: its Dockerfiles, with names that stay unique."""

from __future__ import annotations

import pytest

from mab_hook import discovery
from mab_hook.errors import FatalError
from mab_hook.images import Defaults
from mab_hook.validation import Problems

# The shape of docker/awesome-compose: the same directory names under many samples.
AWESOME = (
    "django/app/Dockerfile",
    "flask/app/Dockerfile",
    "apache-php/app/Dockerfile",
    "nginx-golang/backend/Dockerfile",
    "react-express-mongodb/backend/Dockerfile",
    "react-express-mongodb/frontend/Dockerfile",
    "nginx-golang/proxy/Dockerfile",
    "nginx-flask-mysql/proxy/Dockerfile",
    "nginx-flask-mysql/proxy/Dockerfile.dockerignore",
    "gitea-postgres/Dockerfile",
)


def names(paths: tuple[str, ...], root: str = "repo") -> dict[str, str]:
    problems = Problems("pyproject.toml at abc")
    found = discovery.discover(sorted(paths), Defaults(("linux/amd64",)), problems, root)
    problems.raise_if_any()
    return {image.dockerfile: image.name for image in found}


def test_repeated_directory_names_take_the_directories_that_tell_them_apart() -> None:
    assert names(AWESOME) == {
        "django/app/Dockerfile": "django-app",
        "flask/app/Dockerfile": "flask-app",
        "apache-php/app/Dockerfile": "apache-php-app",
        "nginx-golang/backend/Dockerfile": "nginx-golang-backend",
        "react-express-mongodb/backend/Dockerfile": "react-express-mongodb-backend",
        "react-express-mongodb/frontend/Dockerfile": "frontend",  # unique as it is
        "nginx-golang/proxy/Dockerfile": "nginx-golang-proxy",
        "nginx-flask-mysql/proxy/Dockerfile": "nginx-flask-mysql-proxy",
        "gitea-postgres/Dockerfile": "gitea-postgres",
    }


def test_as_many_directories_as_it_takes() -> None:
    found = names(
        ("a/x/app/Dockerfile", "b/x/app/Dockerfile", "c/app/Dockerfile", "Dockerfile", "tools/Dockerfile.dev")
    )
    assert found == {
        "a/x/app/Dockerfile": "a-x-app",
        "b/x/app/Dockerfile": "b-x-app",
        "c/app/Dockerfile": "c-app",
        "Dockerfile": "repo",
        "tools/Dockerfile.dev": "tools-dev",
    }


def test_ignore_files_are_not_dockerfiles() -> None:
    """`Dockerfile.dockerignore` is the ignore file of `Dockerfile` (and `x.Dockerfile.dockerignore`
    of `x.Dockerfile`): BuildKit reads them as ignore files; parsing one as a Dockerfile fails."""
    assert discovery.dockerfiles(
        [
            "api/Dockerfile",
            "api/Dockerfile.dockerignore",
            "w/worker.Dockerfile",
            "w/worker.Dockerfile.dockerignore",
        ]
    ) == [("api/Dockerfile", ""), ("w/worker.Dockerfile", "worker")]


def test_a_clash_no_directory_resolves_is_a_problem() -> None:
    with pytest.raises(FatalError) as info:
        names(("a/Dockerfile.x", "a/x.Dockerfile"))
    assert "a/x.Dockerfile and a/Dockerfile.x would both be image 'a-x'" in str(info.value)


def test_no_more_directories_than_it_takes() -> None:
    found = names(
        ("src/a/app/Dockerfile", "src/b/app/Dockerfile", "p/q/a/x/api/Dockerfile", "p/q/b/x/api/Dockerfile")
    )
    assert found == {
        "src/a/app/Dockerfile": "a-app",
        "src/b/app/Dockerfile": "b-app",
        "p/q/a/x/api/Dockerfile": "a-x-api",
        "p/q/b/x/api/Dockerfile": "b-x-api",
    }


def test_a_directorys_name_is_made_a_docker_name() -> None:
    assert names(("My Service/Dockerfile", "_tools./Dockerfile", "web--UI/Dockerfile")) == {
        "My Service/Dockerfile": "my-service",
        "_tools./Dockerfile": "tools",
        "web--UI/Dockerfile": "web--ui",
    }


def test_every_dockerfile_no_name_comes_from_is_named_at_once() -> None:
    with pytest.raises(FatalError) as info:
        names(
            (
                "+++/Dockerfile",
                "~~~/Dockerfile",
                "a/Dockerfile.x",
                "a/x.Dockerfile",
                "b/Dockerfile.y",
                "b/y.Dockerfile",
            )
        )
    said = str(info.value)
    for path in ("+++/Dockerfile", "~~~/Dockerfile"):
        assert (
            f"[tool.multiarch] {path}: cannot derive an image name from it; declare it in a "
            "[tool.multiarch.images.NAME] table"
        ) in said
    for first, second, name in (
        ("a/x.Dockerfile", "a/Dockerfile.x", "a-x"),
        ("b/y.Dockerfile", "b/Dockerfile.y", "b-y"),
    ):
        assert (
            f"[tool.multiarch] {first} and {second} would both be image {name!r}; "
            "declare them in [tool.multiarch.images.NAME] tables"
        ) in said
