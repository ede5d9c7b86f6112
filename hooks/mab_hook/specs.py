"""BuildKit's key=value specs (`type=local,dest=cache`, `id=npm,env=NPM_TOKEN`,
`type=bind,source=x`): comma-separated, CSV-quoted, as buildx and BuildKit read them."""

from __future__ import annotations

import csv
import io


def parse(spec: str) -> dict[str, str]:
    """`a=1,b,c="x,y"` -> {"a": "1", "b": "true", "c": "x,y"}; keys lowercased."""
    options: dict[str, str] = {}
    for field in next(csv.reader([spec]), []):
        key, has_value, value = field.partition("=")
        options[key.strip().lower()] = value if has_value else "true"
    return options


def format(options: dict[str, str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(f"{key}={value}" for key, value in options.items())
    return out.getvalue()
