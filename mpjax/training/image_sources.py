"""Image data sets on disk for the streaming pipeline: image folders and ArrayRecord files.

Two grain data sources (``len`` and ``[i] -> {"encoded": PNG bytes, "label": int}``) that
:class:`~mpjax.training.stream.ImageStream` decodes on the fly, and the exporters that write
an in-memory data set (e.g. Fashion-MNIST from :func:`mpjax.data.load_fashion_mnist`) into
either form:

* an image folder ``root/<class>/<name>.png``: classes and files sorted by name, the label
  being the class folder's rank (:func:`export_image_folder` names the classes ``000``,
  ``001``, ... so the rank is the label);
* ArrayRecord files: record ``i`` is the int32 little-endian label, then the PNG bytes.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Any

import grain
import numpy as np

__all__ = [
    "ArrayRecordSource",
    "ImageFolderSource",
    "export_array_record",
    "export_image_folder",
]

#: File suffixes an image folder may hold (anything else is skipped).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_LABEL = struct.Struct("<i")  # an ArrayRecord record: int32 label, then the PNG bytes


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    x = np.asarray(image, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x).save(buf, "PNG")
    return buf.getvalue()


def export_image_folder(images: np.ndarray, labels: np.ndarray, root: str | os.PathLike) -> Path:
    """Write ``images`` as ``root/<label:03d>/<index:06d>.png`` (an image folder).

    An :class:`ImageFolderSource` reads them back class by class, so its record ``i`` is
    example ``np.argsort(labels, kind="stable")[i]``.

    Args:
      images: uint8 ``[N, H, W]`` or ``[N, H, W, C]``.
      labels: int ``[N]`` in ``[0, 999]``.
      root: the folder (created; must not hold class folders yet).

    Returns:
      ``root``.
    """
    root = Path(root)
    if len(images) != len(labels):
        raise ValueError(f"labels: {len(labels)} labels for {len(images)} images.")
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"root: {root} is not empty; pass a new folder.")
    for i, (x, y) in enumerate(zip(images, labels, strict=True)):
        folder = root / f"{int(y):03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.png").write_bytes(_png(x))
    return root


def export_array_record(images: np.ndarray, labels: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``images`` into one ArrayRecord file, record ``i`` = example ``i``.

    A record is the int32 little-endian label followed by the PNG bytes.
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    if len(images) != len(labels):
        raise ValueError(f"labels: {len(labels)} labels for {len(images)} images.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = ArrayRecordWriter(str(path), "group_size:1")
    for x, y in zip(images, labels, strict=True):
        writer.write(_LABEL.pack(int(y)) + _png(x))
    writer.close()
    return path


class ImageFolderSource:
    """A grain data source over ``root/<class>/*.png``: classes and files sorted by name.

    Record ``i`` is ``{"encoded": bytes, "label": int}`` (the class's rank among the sorted
    class folder names).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        classes = (
            sorted(d.name for d in self.root.iterdir() if d.is_dir()) if self.root.is_dir() else []
        )
        files, labels = [], []
        for label, cls in enumerate(classes):
            names = sorted(
                f for f in (self.root / cls).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
            )
            files += [str(f) for f in names]
            labels += [label] * len(names)
        if not files:
            raise ValueError(f"root: no images under {self.root}/<class>/*.png; check the path.")
        self.classes, self.files, self.labels = classes, files, labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"encoded": Path(self.files[i]).read_bytes(), "label": self.labels[i]}

    def __repr__(self) -> str:
        return f"ImageFolderSource({str(self.root)!r}, {len(self)} images)"


class ArrayRecordSource:
    """A grain data source over ArrayRecord files written by :func:`export_array_record`."""

    def __init__(self, paths: str | os.PathLike | list):
        self.paths = [str(p) for p in (paths if isinstance(paths, list | tuple) else [paths])]
        missing = [p for p in self.paths if not Path(p).is_file()]
        if missing:
            raise ValueError(f"paths: no ArrayRecord file at {missing[0]}; check the path.")
        self._records = grain.sources.ArrayRecordDataSource(self.paths)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        record = self._records[i]
        return {"encoded": record[_LABEL.size :], "label": _LABEL.unpack_from(record)[0]}

    def __repr__(self) -> str:
        return f"ArrayRecordSource({self.paths!r}, {len(self)} records)"
