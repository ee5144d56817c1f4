"""The `csv` dataset: a table of `path,label[,x0,y0,x1,y1]` rows — several rows of one image for its
several boxes — for users who keep their labels in a spreadsheet; errors name the file and line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from ..registry import check_fields, param
from .annotations import clip_box
from .base import CROP_HELP, DATASETS, IMAGE_SIZE_HELP, Sample
from .imagefiles import CROP_FRACTION, error_sample, filter_of, read_rgb, resize_crop

HEADER = ("path", "label", "x0", "y0", "x1", "y1")


@dataclass
class Row:
    """One image of the table: its file, label, boxes (original pixels) and the line of each box."""

    path: Path
    label: int
    line: int
    boxes: list[np.ndarray] = field(default_factory=list)
    box_lines: list[int] = field(default_factory=list)


def table_file(root: str | None, file: str | None) -> Path:
    """The CSV file: `file` (relative to root, else the current folder), `root` itself when it is a
    file, else root/labels.csv."""
    if not root and not file:
        raise DataError("dataset 'csv' needs `dataset.root`: a CSV file of path,label[,x0,y0,x1,y1] rows "
                        "or the folder holding labels.csv")
    base = Path(root).expanduser() if root else Path.cwd()
    if file:
        p = Path(file).expanduser()
        path = base / p if root and base.is_dir() and (base / p).is_file() else p
    else:
        path = base if base.is_file() else base / "labels.csv"
    if not path.is_file():
        raise DataError(f"csv: table not found: {path}")
    return path


@DATASETS.register("csv")
@dataclass
class CsvDataset(Dataset):
    """Images listed in a CSV table: `path,label` per image, or `path,label,x0,y0,x1,y1` with one row
    per box (xyxy in the image's pixels; an image with several boxes has several rows). Paths are
    relative to the table's folder (or absolute); labels are class indices, or class names mapped by
    `classes` (default: the sorted names found). A header row `path,label,…` is optional. Images are
    resized (shorter side to image_size/crop_fraction) and centre-cropped; boxes follow."""

    root: str | None = param(None, help="the CSV table, or its folder")
    split: str = param("test", help="unused: a table is one split")
    image_size: int = param(224, help=IMAGE_SIZE_HELP, ge=1)
    crop_fraction: float = param(CROP_FRACTION, help=CROP_HELP, gt=0, le=1)
    interpolation: str = param("bilinear", help="resize filter: nearest, bilinear, bicubic, lanczos, box or hamming")
    file: str | None = param(None, help="the CSV table; null: root itself if a file, else root/labels.csv")
    classes: list[str] | None = param(None, help="class names in label order, when labels are names")

    def __post_init__(self) -> None:
        check_fields(self)
        filter_of(self.interpolation)
        self.table = table_file(self.root, self.file)
        raw = self.read()
        names = sorted({lab for _, lab, _ in raw if not lab.lstrip("-").isdigit()})
        if names and self.classes is None:
            self.classes = names
        self.class_names = list(self.classes) if self.classes else None
        self.rows: list[Row] = []
        by_path: dict[Path, Row] = {}
        for line, label_text, cells in raw:
            label = self.label_of(label_text, line)
            path = self.image_path(cells[0], line)
            row = by_path.get(path)
            if row is None:
                row = by_path[path] = Row(path, label, line)
                self.rows.append(row)
            elif row.label != label:
                raise DataError(f"{self.table}, line {line}: {cells[0]} has label {label_text} here but "
                                f"{row.label} on line {row.line}")
            if len(cells) == 6:
                row.boxes.append(self.box_of(cells, line))
                row.box_lines.append(line)
        if not self.rows:
            raise DataError(f"{self.table}: no rows (expected path,label[,x0,y0,x1,y1])")
        labels = [r.label for r in self.rows]
        self.num_classes = len(self.class_names) if self.class_names else max(labels) + 1

    def read(self) -> list[tuple[int, str, list[str]]]:
        """(line, label text, cells) of every data row."""
        out = []
        with self.table.open(newline="") as f:
            for line, cells in enumerate(csv.reader(f), 1):
                cells = [c.strip() for c in cells]
                if not cells or not any(cells) or cells[0].startswith("#"):
                    continue
                if line == 1 and [c.lower() for c in cells] == list(HEADER[:len(cells)]):
                    continue
                if len(cells) not in (2, 6):
                    raise DataError(f"{self.table}, line {line}: {len(cells)} columns; expected path,label or "
                                    "path,label,x0,y0,x1,y1")
                out.append((line, cells[1], cells))
        return out

    def label_of(self, text: str, line: int) -> int:
        if text.lstrip("-").isdigit():
            label = int(text)
            if label < 0 or (self.class_names and label >= len(self.class_names)):
                valid = f"0…{len(self.class_names) - 1}" if self.class_names else "≥ 0"
                raise DataError(f"{self.table}, line {line}: label {label} is not a class index ({valid})")
            return label
        if not self.class_names or text not in self.class_names:
            raise DataError(f"{self.table}, line {line}: unknown class '{text}'. Valid: {', '.join(self.class_names or [])}")
        return self.class_names.index(text)

    def image_path(self, text: str, line: int) -> Path:
        path = Path(text).expanduser()
        path = path if path.is_absolute() else self.table.parent / path
        if not path.is_file():
            raise DataError(f"{self.table}, line {line}: image not found: {path}")
        return path

    def box_of(self, cells: list[str], line: int) -> np.ndarray:
        try:
            box = np.array([float(c) for c in cells[2:6]])
        except ValueError:
            raise DataError(f"{self.table}, line {line}: box {cells[2:6]} is not four numbers x0,y0,x1,y1") from None
        if not (box[2] > box[0] and box[3] > box[1]):
            raise DataError(f"{self.table}, line {line}: box {cells[2:6]} needs x1 > x0 and y1 > y0")
        return box

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Sample:
        row = self.rows[index]
        sample_id = f"{row.path.relative_to(self.table.parent) if row.path.is_relative_to(self.table.parent) else row.path}"
        im, error = read_rgb(row.path)
        if im is None:
            return error_sample(error or str(row.path), row.label, sample_id, self.image_size)
        boxes = None
        if row.boxes:
            boxes = np.stack([clip_box(b, im.size[0], im.size[1], f"{self.table}, line {ln}")
                              for b, ln in zip(row.boxes, row.box_lines)])  # a box reaching outside: warned
        image, tboxes = resize_crop(im, self.image_size, boxes, self.crop_fraction, self.interpolation)
        return Sample(image=image, label=row.label, id=sample_id, boxes=tboxes)
