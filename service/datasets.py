"""Dataset ingestion: validate a staged upload with the library and publish it under its content id."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from api_schemas.errors import ErrorDetail
from models.dataset import Dataset, DatasetError
from models.dataset_loader import dataset_sha256, load_dataset
from models.report import fsync_files, publish_dir, write_json
from service.errors import ApiError
from service.quotas import tree_bytes
from service.uploads import Upload
from worker.artifacts import ARCHIVE_NAMES, ArtifactStore, json_safe
from worker.settings import Settings

log = logging.getLogger(__name__)


def summarize(dataset: Dataset, dataset_id: str, upload: Upload) -> dict[str, Any]:
    labels = np.asarray(dataset.label, dtype=float)
    labeled = labels[~np.isnan(labels)]
    return json_safe(
        {
            "id": dataset_id,
            "created_at": time.time(),
            "size_bytes": sum(upload.sizes.values()),
            "source": upload.archive_kind or "files",
            "files": {
                role: {"name": path.name, "sha256": upload.sha256[role], "bytes": upload.sizes[role]}
                for role, path in upload.files.items()
            },
            "n": len(dataset.ids),
            "splits": dict(Counter(str(s) for s in dataset.split)),
            "modalities": {
                m: {"dim": int(f.dim), "sequence": bool(f.is_sequence), "shape": list(np.shape(f.values))}
                for m, f in dataset.features.items()
            },
            "label_range": {
                "min": float(labeled.min()) if labeled.size else None,
                "max": float(labeled.max()) if labeled.size else None,
                "labeled": int(labeled.size),
            },
            "library": dataset.summary(),
        }
    )


def _problem_field(file: str, field: str) -> str | None:
    """``utterances.csv.split``, ``features.npz.audio``; problems of the staged archive name ``archive``."""
    file = "archive" if file in ARCHIVE_NAMES else file
    return ".".join(x for x in (file, field) if x) or None


def dataset_error(exc: DatasetError) -> ApiError:
    details = [
        ErrorDetail(field=_problem_field(str(p.file), str(p.field)), problem=str(p))
        for p in getattr(exc, "problems", [])
    ] or [ErrorDetail(field=None, problem=str(exc))]
    return ApiError(
        422,
        f"dataset is not valid: {exc}"[:2000],
        code="invalid_dataset",
        field=details[0].field,
        details=details,
    )


def _load(store: ArtifactStore, staging: Path, dataset_id: str | None, settings: Settings) -> Dataset:
    try:
        return load_dataset(
            store.dataset_input(staging),
            for_training=True,
            max_archive_bytes=settings.max_dataset_bytes,
            extract_dir=staging,  # on the artifact volume, removed with the staging folder; never $TMPDIR
            max_ratio=settings.max_compression_ratio,
            max_array_bytes=settings.max_dataset_bytes,
        )
    except DatasetError as exc:
        raise dataset_error(exc) from None
    except OSError:  # the volume itself (full, read-only): the route answers 507
        raise
    except Exception as exc:  # a reader error on hostile bytes is still the upload's problem, not a 500
        log.warning("upload %s could not be read", dataset_id, exc_info=exc)
        raise ApiError(
            422,
            f"dataset could not be read: {type(exc).__name__}: {exc}"[:2000],
            code="invalid_dataset",
            field="body",
        ) from None


def ingest(
    store: ArtifactStore,
    owner: str,
    staging: Path,
    upload: Upload,
    settings: Settings,
    room: Callable[[int], AbstractContextManager[None]],
) -> tuple[dict[str, Any], bool]:
    """Publish the upload staged in ``staging`` (its ``data/`` folder) as a dataset of ``owner`` (an API
    key's id). Returns (summary, created). ``room(bytes)``: held around the publish, it refuses what would
    not fit (the key's stored-bytes quota).

    The id is the library's dataset sha256 (utterances.csv bytes then features.npz bytes), so the same
    content gets the same id whether it came as two files or inside an archive; it is deduplicated within
    the owner's datasets only (another key's copy is neither found nor revealed)."""
    dataset_id = upload.content_sha256
    if dataset_id is None and upload.archive_kind is None:
        dataset_id = dataset_sha256(store.dataset_input(staging))
    if dataset_id is not None and (existing := store.dataset_summary(owner, dataset_id)) is not None:
        return existing, False
    dataset = _load(store, staging, dataset_id, settings)
    dataset_id = dataset.sha256
    if (existing := store.dataset_summary(owner, dataset_id)) is not None:
        return existing, False
    summary = summarize(dataset, dataset_id, upload)
    write_json(staging / "summary.json", summary, sort_keys=True)
    (store.datasets / owner).mkdir(parents=True, exist_ok=True)
    fsync_files(staging)  # the slow part, before the room is held: under it only the count and a rename
    with room(tree_bytes(staging)):
        published = publish_dir(staging, store.datasets / owner / dataset_id)
    if published:
        return summary, True
    return store.dataset_summary(owner, dataset_id) or summary, False
