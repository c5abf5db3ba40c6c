"""The project's own digit pictures: files under ``data/own/<label>/``, named by their content.

file_picture(data, label, own_dir)   # what `digits serve`'s "Wrong? It is a ..." calls
"""

import hashlib
import io
from pathlib import Path

from PIL import Image

from digits.errors import DigitsError
from digits.files import atomic_path
from digits.images import FORMATS, decode_grayscale, mnist_frame
from digits.mnist import N_CLASSES

NAME_HEX_DIGITS = (
    16  # 64 bits of SHA-256: no collision among any number of pictures a person draws
)


def file_picture(data: bytes, label: int, own_dir: Path) -> Path:
    """Save picture file bytes ``data`` as a picture of digit ``label`` under
    ``own_dir/<label>/``, named by a hash of its content (the same picture twice is one file);
    return its path.

    Raises ``DigitsError`` for a label that is not a digit 0-9, and ``ImageError`` for bytes
    that are not a picture in one of ``FORMATS`` or hold no digit, before anything is written.
    """
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < N_CLASSES:
        raise DigitsError(f"label: expected a digit 0-{N_CLASSES - 1}, got {label!r}")
    mnist_frame(decode_grayscale(io.BytesIO(data), "the picture"), "the picture")
    path = own_dir / str(label) / f"{content_name(data)}.{picture_suffix(data)}"
    if not path.exists():
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return path


def content_name(data: bytes) -> str:
    """The file name (without suffix) for picture bytes ``data``: hex of their SHA-256."""
    return hashlib.sha256(data).hexdigest()[:NAME_HEX_DIGITS]


def picture_suffix(data: bytes) -> str:
    """The usual file suffix ("png", "jpg", ...) of picture bytes ``data``, from its header."""
    with Image.open(io.BytesIO(data), formats=FORMATS) as image:
        return {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}.get(image.format, image.format.lower())
