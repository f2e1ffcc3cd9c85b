"""Secrets from the environment: a variable holds the secret, or names a file that does (a
mounted Docker or Kubernetes secret), never both. Used for the model signing key (training
and serving) and the API keys (serving)."""

from __future__ import annotations

from pathlib import Path


def read_secret(env: dict[str, str], name: str, error: type[ValueError]) -> str | None:
    """The value of `name`, or the content of the file named by `name`_FILE; None without
    either. `error` (with one line naming the setting) when both are set or the file cannot
    be read."""
    text, path = env.get(name) or "", env.get(f"{name}_FILE") or ""
    if text and path:
        raise error(f"set {name} or {name}_FILE, not both")
    if not path:
        return text or None
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{name}_FILE {path} cannot be read "
                    f"({getattr(err, 'strerror', None) or err})") from None
