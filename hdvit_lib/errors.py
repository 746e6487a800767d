"""Errors a reader meets, worded so that the message says what to do (no deep traceback needed).

- :class:`DownloadError`: a download failed (no network, a server error). The message names the
  URL and where to put the file by hand.
- :class:`UnreadableCheckpoint`: a checkpoint file that ``torch.load(..., weights_only=True)``
  cannot read (truncated, garbage). The message names the file and what to delete; it never
  suggests unsafe loading.
"""

from __future__ import annotations

from pathlib import Path


class DownloadError(OSError):
    """A failed download; the message says which URL failed and where to place the file by hand."""


class UnreadableCheckpoint(RuntimeError):
    """A checkpoint file that cannot be read weights-only (truncated or not a torch file)."""


def download_failed(url: str, error: BaseException, by_hand: str) -> DownloadError:
    """A :class:`DownloadError` for ``url``, with the reason from ``error`` and ``by_hand``: how to
    place the file without network. Raise it ``from None``: the socket traceback says no more."""
    reason = getattr(error, "reason", None) or error
    return DownloadError(f"could not download {url} ({type(error).__name__}: {reason}).\n{by_hand}")


def unreadable(path: str | Path, error: BaseException, what_to_do: str) -> UnreadableCheckpoint:
    """An :class:`UnreadableCheckpoint` for ``path``. torch's own message is left out: for a file
    that is not a weights-only checkpoint it suggests ``weights_only=False``, which would run any
    code a tampered file holds."""
    size = Path(path).stat().st_size if Path(path).exists() else 0
    return UnreadableCheckpoint(
        f"cannot read {path} ({size} bytes) weights-only ({type(error).__name__}): it is truncated, not a torch "
        f"file, or holds more than tensors. {what_to_do}")
