"""Frozen-backbone features: the fastest engine on this machine, a pipelined decoder, and a disk cache.

Transfer learning spends almost all its time here, so each image is embedded once per backbone and
kept in SQLite keyed by the sha256 of its bytes: re-runs and retraining after adding images only
embed what is new. On CPU the backbone runs in ONNX Runtime (exported once, checked against
PyTorch); on a GPU it runs in PyTorch with channels_last and autocast.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from app.engine.backbones import (
    FeatureExtractor,
    build_backbone,
    expected_hash_prefix,
    file_sha256,
    get_spec,
)
from app.engine.errors import (
    ImageRejected,
    InternalFailure,
    InvalidInput,
    TrainingCancelled,
)
from app.engine.images import DEFAULT_MAX_PIXELS, Preprocessing, model_input

# Bump when preprocessing changes so stale vectors are never reused.
EMBEDDING_VERSION = 1
ONNX_OPSET = 17
PARITY_TOLERANCE = 1e-3

ProgressCallback = Callable[[int, int], None]


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EmbeddingCache:
    """Vectors in one SQLite file, keyed by backbone, preprocessing version and image content hash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db
        finally:
            db.close()

    @staticmethod
    def key(backbone: str, digest: str) -> str:
        return f"{backbone}/v{EMBEDDING_VERSION}/{digest}"

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, blob in db.execute(
                    f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", chunk
                ):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO embeddings (key, vector) VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )

    def count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])


class FeatureEngine(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.split(":")[0] == "cuda" and not torch.cuda.is_available():
        raise InvalidInput(
            f"device is set to {device} but no CUDA GPU is visible. Use --device auto or cpu."
        )
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise InvalidInput(
            f"device is set to {device} but this machine has {torch.cuda.device_count()} CUDA GPUs "
            "(numbered from 0). Name one of them."
        )
    if device == "mps" and not _mps_available():
        raise InvalidInput(
            "device is set to mps but Apple's MPS is not available on this machine. "
            "Use --device auto or cpu."
        )
    return torch.device(device)


class TorchEngine:
    """PyTorch inference; channels_last everywhere and half-precision autocast on a GPU."""

    def __init__(self, extractor: FeatureExtractor, device: torch.device) -> None:
        self.device = device
        self.model = extractor.eval().to(device).to(memory_format=torch.channels_last)
        self.name = f"torch-{device.type}"

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(batch)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        tensor = tensor.to(self.device, non_blocking=True).contiguous(
            memory_format=torch.channels_last
        )
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            return self.model(tensor).float().cpu().numpy()


class OnnxEngine:
    """The frozen backbone exported once to ONNX and run with ONNX Runtime (CPU)."""

    def __init__(self, onnx_path: Path) -> None:
        from app.engine.onnx_runtime import cpu_session

        self.session = cpu_session(onnx_path)
        self.input_name = self.session.get_inputs()[0].name
        self.name = "onnxruntime-cpu"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


def export_onnx(module: torch.nn.Module, path: Path, input_size: int, output_name: str) -> None:
    """Write `module` as one self-contained ONNX file with a dynamic batch dimension, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.partial")
    example = torch.zeros(1, 3, input_size, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(partial),
            dynamo=False,
            input_names=["input"],
            output_names=[output_name],
            dynamic_axes={"input": {0: "batch"}, output_name: {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
    partial.replace(path)


_export_lock = threading.Lock()


def backbone_onnx(backbone: str, cache_dir: Path, weights_path: Path | None = None) -> Path:
    """The cached ONNX export of a backbone, made and checked against PyTorch on first use."""
    spec = get_spec(backbone)
    path = (
        cache_dir / "backbones" / f"{backbone}-{expected_hash_prefix(spec)}-opset{ONNX_OPSET}.onnx"
    )
    with _export_lock:
        if path.is_file():
            return path
        extractor = build_backbone(backbone, weights_path).eval()
        export_onnx(extractor, path, spec.preprocessing.crop_size, "features")
        size = spec.preprocessing.crop_size
        probe = np.random.default_rng(0).standard_normal((2, 3, size, size), dtype=np.float32)
        with torch.inference_mode():
            expected = extractor(torch.from_numpy(probe)).numpy()
        if np.abs(OnnxEngine(path)(probe) - expected).max() > PARITY_TOLERANCE:
            path.unlink(missing_ok=True)
            raise InternalFailure(
                f"The ONNX export of {backbone} disagrees with PyTorch. Set TEACHBOX_FEATURE_ENGINE=torch."
            )
    return path


def make_engine(
    backbone: str,
    cache_dir: Path,
    device: str = "auto",
    engine: str = "auto",
    weights_path: Path | None = None,
) -> FeatureEngine:
    """The fastest feature engine for this machine, unless `engine` names one."""
    target = resolve_device(device)
    use_onnx = engine == "onnx" or (engine == "auto" and target.type == "cpu")
    if use_onnx:
        return OnnxEngine(backbone_onnx(backbone, cache_dir, weights_path))
    return TorchEngine(build_backbone(backbone, weights_path), target)


@dataclass
class EmbedResult:
    vectors: dict[Path, np.ndarray]
    rejected: dict[Path, str] = field(default_factory=dict)
    computed: int = 0
    seconds: float = 0.0

    def matrix(self, paths: Sequence[Path]) -> np.ndarray:
        return (
            np.stack([self.vectors[p] for p in paths])
            if paths
            else np.zeros((0, 0), dtype=np.float32)
        )


def _prepare(path: Path, prep: Preprocessing, max_pixels: int) -> np.ndarray | str:
    try:
        return model_input(path.read_bytes(), prep, max_pixels=max_pixels, fast=True)
    except ImageRejected as exc:
        return exc.reason
    except OSError as exc:
        return f"The file could not be read ({exc.strerror or exc})."


@dataclass
class Embedder:
    """Embeds image files with one backbone, using and filling the cache; decoding overlaps inference."""

    backbone: str
    cache: EmbeddingCache
    engine_factory: Callable[[], FeatureEngine]
    batch_size: int = 32
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = max(1, min(4, os.cpu_count() or 1))
    _engine: FeatureEngine | None = None

    @property
    def engine(self) -> FeatureEngine:
        if self._engine is None:
            self._engine = self.engine_factory()
        return self._engine

    def embed(
        self,
        paths: Sequence[Path],
        on_progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> EmbedResult:
        started = time.perf_counter()
        prep = get_spec(self.backbone).preprocessing
        result = EmbedResult(vectors={})
        with ThreadPoolExecutor(self.workers, thread_name_prefix="embed") as pool:
            keys = [
                EmbeddingCache.key(self.backbone, digest) for digest in pool.map(file_sha256, paths)
            ]
            cached = self.cache.get_many(sorted(set(keys)))
            todo = [(path, key) for path, key in zip(paths, keys, strict=True) if key not in cached]
            for path, key in zip(paths, keys, strict=True):
                if key in cached:
                    result.vectors[path] = cached[key]
            total = len(todo)
            if on_progress:
                on_progress(0, total)
            self._embed_missing(pool, todo, prep, result, on_progress, should_stop)
        result.computed = total
        result.seconds = time.perf_counter() - started
        return result

    def _embed_missing(
        self,
        pool: ThreadPoolExecutor,
        todo: list[tuple[Path, str]],
        prep: Preprocessing,
        result: EmbedResult,
        on_progress: ProgressCallback | None,
        should_stop: Callable[[], bool],
    ) -> None:
        """Decode at most two batches ahead of inference, so memory stays flat however large the project."""
        window: deque[tuple[list[tuple[Path, str]], list[Future]]] = deque()
        batches = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        done = 0
        for index in range(len(batches) + 2):
            if index < len(batches):
                batch = batches[index]
                window.append(
                    (
                        batch,
                        [pool.submit(_prepare, path, prep, self.max_pixels) for path, _ in batch],
                    )
                )
            if len(window) > 2 or (index >= len(batches) and window):
                if should_stop():
                    for _, futures in window:
                        for future in futures:
                            future.cancel()
                    raise TrainingCancelled
                done += self._run_batch(*window.popleft(), result)
                if on_progress:
                    on_progress(done, len(todo))

    def _run_batch(
        self, items: list[tuple[Path, str]], futures: list[Future], result: EmbedResult
    ) -> int:
        arrays, good = [], []
        for (path, key), future in zip(items, futures, strict=True):
            prepared = future.result()
            if isinstance(prepared, str):
                result.rejected[path] = prepared
            else:
                arrays.append(prepared)
                good.append((path, key))
        if arrays:
            vectors = self.engine(np.stack(arrays))
            self.cache.put_many({key: vec for (_, key), vec in zip(good, vectors, strict=True)})
            for (path, _), vec in zip(good, vectors, strict=True):
                result.vectors[path] = vec
        return len(items)


def make_embedder(
    backbone: str,
    cache_dir: Path,
    device: str = "auto",
    engine: str = "auto",
    weights_path: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Embedder:
    """An Embedder whose cache lives in `cache_dir` and whose engine is built on first use."""
    cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
    return Embedder(
        backbone,
        cache,
        lambda: make_engine(backbone, cache_dir, device, engine, weights_path),
        max_pixels=max_pixels,
    )
