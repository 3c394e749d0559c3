"""Trained scikit-learn models on disk: skops files checked against their JSON manifest.

The policy tagger, the learned ranker and the desk router share this: a model file is loaded only
when the library versions it was trained with still match (same minor), its sha256 equals the
manifest's, and every type it holds is on the caller's allow-list (skops never runs pickle code).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


class Refused(Exception):
    """A saved model that must not be used; the message says why."""


def sio() -> Any:
    """Return skops.io, imported on first use: it pulls in torch (through scikit-learn's array API), ~3 s."""
    import skops.io

    return skops.io


def library_versions() -> dict[str, str]:
    """Return the versions a model file depends on, for its manifest."""
    return {
        "sklearn": importlib.metadata.version("scikit-learn"),
        "skops": importlib.metadata.version("skops"),
        "numpy": np.__version__,
    }


def minor(version: Any) -> tuple[str, ...]:
    """Return a version's major and minor parts."""
    return tuple(str(version).split(".")[:2])


def check_versions(stored: Mapping[str, Any] | None, names: Iterable[str] = ("sklearn", "skops")) -> None:
    """Refuse a model trained with another minor version of one of the named libraries."""
    stored = stored or {}
    current = library_versions()
    for name in names:
        if minor(stored.get(name)) != minor(current[name]):
            raise Refused(f"trained with {name} {stored.get(name)}, running {current[name]}; retrain")


def dumps(bundle: Any, **kwargs: Any) -> tuple[bytes, str]:
    """Serialise a bundle with skops; return the bytes and their sha256 for the manifest."""
    blob = sio().dumps(bundle, **kwargs)
    return blob, hashlib.sha256(blob).hexdigest()


def load_verified(model_path: Path, manifest: Mapping[str, Any], allowed_types: Iterable[str]) -> Any:
    """Load a model file whose checksum matches the manifest and whose types are all allowed."""
    # One read: the checksum, the type check and the load all see the same bytes.
    data = Path(model_path).read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest.get("model_sha256"):
        raise Refused("model checksum differs from the manifest (file changed or torn write)")
    untrusted = sio().get_untrusted_types(data=data)
    unexpected = sorted(set(untrusted) - set(allowed_types))
    if unexpected:
        raise Refused(f"model file holds types outside the allow-list: {', '.join(unexpected)}")
    return sio().loads(data, trusted=untrusted)


def load_bundle(
    model_path: Path,
    manifest: Mapping[str, Any],
    allowed_types: Iterable[str],
    *,
    format: Any,
    holds: tuple[str, type],
    what: str,
    same_as_manifest: Iterable[str] = (),
) -> dict[str, Any]:
    """Load a verified bundle dict of this format holding `holds` (key, class), its keys agreeing with the manifest."""
    bundle = load_verified(model_path, manifest, allowed_types)
    key, cls = holds
    if not isinstance(bundle, dict) or bundle.get("format") != format or not isinstance(bundle.get(key), cls):
        raise Refused(f"model file does not hold a {what} bundle")
    for name in same_as_manifest:
        if bundle.get(name) != manifest.get(name):
            raise Refused(f"{name} in the manifest differs from the model file")
    return bundle
