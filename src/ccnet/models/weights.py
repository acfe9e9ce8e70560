"""Reading and writing weight files; downloading published ones into the torch hub cache.

Files are read with ``torch.load(..., weights_only=True)`` (no code runs from untrusted pickles) or as
safetensors. Our own files hold our state dict plus a small string metadata dict (architecture name,
number of classes, where the weights came from): ``.safetensors`` (metadata in the header) or ``.pth``
(``{"state_dict": ..., "meta": ...}``).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "WeightsDownloadError",
    "WeightsFileError",
    "cached_download",
    "is_url",
    "read_weights",
    "save_weights",
]

_HASH = re.compile(r"-([a-f0-9]{8,})\.")  # open-mmlab file names end in -<sha256 prefix>.pth


class WeightsFileError(ValueError):
    """A weights file that cannot be read (empty, truncated, random bytes, refused pickle): names the file."""


class WeightsDownloadError(OSError, RuntimeError):
    """No cached copy and every download failed (offline, unknown host, HTTP error): names the URLs.

    An ``OSError`` (the message is for the user: what to fetch, where to put it) and, as before, a
    ``RuntimeError``."""


def is_url(location: str | os.PathLike) -> bool:
    return str(location).startswith(("http://", "https://"))


def cached_download(urls: str | Sequence[str], *, progress: bool = True) -> Path:
    """The local copy of the first of ``urls`` that is cached or downloads, under
    ``torch.hub.get_dir()/checkpoints``. A sha256 prefix in the file name is checked after download.

    Raises:
        WeightsDownloadError: (a RuntimeError) nothing cached and every download failed (e.g. offline);
            names the URLs.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    directory = Path(torch.hub.get_dir()) / "checkpoints"
    targets = [(url, directory / Path(urllib.parse.urlparse(url).path).name) for url in urls]
    for _, target in targets:
        if target.is_file():
            return target
    directory.mkdir(parents=True, exist_ok=True)
    errors = []
    for url, target in targets:
        match = _HASH.search(target.name)
        try:
            torch.hub.download_url_to_file(
                url, str(target), match.group(1) if match else None, progress=progress
            )
            return target
        except Exception as err:  # network errors come in many types (URLError, HTTPError, OSError, ...)
            errors.append(f"{url}: {err}")
    raise WeightsDownloadError(
        "could not download the weights (offline?) and no cached copy in "
        f"{directory}: " + "; ".join(errors) + ". Download the file by hand and pass its local path."
    )


def read_weights(location: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
    """Load a weight file (local path or URL) -> (checkpoint object, metadata).

    ``.safetensors`` -> (tensors, header metadata); anything else goes through ``torch.load`` with
    ``weights_only=True`` -> (the loaded dict, its ``meta`` entry when it is a dict of strings).

    Raises:
        FileNotFoundError: no such file (a folder is not a weights file either).
        WeightsFileError: (a ValueError) an empty, truncated or otherwise unreadable file; names it.
        WeightsDownloadError: a URL that is not cached and cannot be downloaded.
    """
    path = cached_download(str(location)) if is_url(location) else Path(location)
    if not path.is_file():
        what = "is a folder, not a weights file" if path.is_dir() else "not found"
        raise FileNotFoundError(f"weights file {what}: {path}")
    if path.stat().st_size == 0:
        raise WeightsFileError(f"{path}: empty file (0 bytes), not a weights file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsFileError(
            f"{path}: not a loadable weights file with weights_only=True (pickled objects other than tensors "
            f"and plain containers are refused for safety): {_first_line(err)}"
        ) from err
    if not isinstance(checkpoint, Mapping):
        raise WeightsFileError(f"{path}: expected a dict of tensors, got {type(checkpoint).__name__}")
    meta = checkpoint.get("meta")
    meta = (
        {str(k): str(v) for k, v in meta.items() if isinstance(v, (str, int, float))}
        if isinstance(meta, Mapping)
        else {}
    )
    return dict(checkpoint), meta


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:  # truncated / random / foreign bytes
        raise WeightsFileError(
            f"{path}: not a readable .safetensors file (truncated or corrupt?): {_first_line(err)}"
        ) from err


def save_weights(
    path: str | os.PathLike, state_dict: Mapping[str, Tensor], meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``state_dict`` (+ string ``meta``) as ``.safetensors`` or, for any other suffix, a ``.pth``."""
    path = Path(path)
    meta = {str(k): str(v) for k, v in (meta or {}).items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        # Tensors sharing storage cannot be saved by safetensors: give each its own.
        save_file({k: v.clone() for k, v in tensors.items()}, str(path), metadata=meta)
    else:
        torch.save({"state_dict": tensors, "meta": meta}, path)
    return path


def _first_line(error: BaseException) -> str:
    """The first line of a library's message (torch's refusals run over many lines of advice)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
