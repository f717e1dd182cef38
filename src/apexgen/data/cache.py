"""An on-disk cache of encoded samples (latents and prompt embeddings), so each image and prompt is
encoded once.

Layout of ``<cache_dir>/<backbone>-<key>/``: ``index.json`` (the identity the cache was built for, the
shards with their sample counts and byte sizes, the latent shape), ``shard_00000.safetensors`` ...
(tensors ``<i>.tokens``, ``<i>.pooled``, ``<i>.mask``, ``<i>.latents`` of the shard's i-th sample, absent
when None) and ``null.safetensors`` (the empty prompt). ``key`` hashes the identity: the data source
(file contents, or sizes and modification times), the resolution, the encoding settings, and every
encoding component of the pipeline (text encoders, tokenizers, VAE: class, config and a probe of each
weight tensor: its first and last values). Changed data or encoders therefore get a new folder (old folders
stay until removed by hand). A folder is written under a temporary name and renamed when complete; on
opening, an unreadable or mismatched index, a missing shard, one of another size (truncated) or one whose
header does not list its samples (overwritten) is logged and the cache rebuilt, never used.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from apexgen.data.encoding import EncodedDataset, EncodedSample, EncodedText
from apexgen.data.image_text import DataError

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the layout or the meaning of the stored tensors changes
INDEX_FILE = "index.json"
NULL_FILE = "null.safetensors"
KEY_LENGTH = 20  # hex digits of the identity hash in the folder name
PROBE = 8  # elements read from each end of every weight tensor for the fingerprint
SKIPPED_COMPONENTS = ("transformer", "scheduler")  # pipeline parts that play no role in encoding


def module_fingerprint(module: nn.Module) -> str:
    """Class, config, and names, shapes, dtypes and first/last values of every parameter and buffer."""
    digest = hashlib.sha256(type(module).__name__.encode())
    config = getattr(module, "config", None)
    if config is not None:
        values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        digest.update(json.dumps(values, sort_keys=True, default=str).encode())
    for name, tensor in itertools.chain(module.named_parameters(), module.named_buffers()):
        flat = tensor.detach().reshape(-1)
        probe = torch.cat([flat[:PROBE], flat[-PROBE:]]).float().cpu()
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(probe.numpy().tobytes())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """Class, vocabulary and rules, chat template and maximum length; not the truncation and padding state
    that a fast tokenizer keeps from its latest call."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        rules = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
    else:
        rules = tokenizer.get_vocab()
    settings = [type(tokenizer).__name__, getattr(tokenizer, "chat_template", None), tokenizer.model_max_length]
    return hashlib.sha256(json.dumps([rules, settings], sort_keys=True, default=str).encode()).hexdigest()


def encoder_identity(pipeline) -> dict[str, str]:
    """A fingerprint of each pipeline component that encoding uses."""
    identity = {"pipeline": type(pipeline).__name__}
    for name, component in sorted(pipeline.components.items()):
        if component is None or name in SKIPPED_COMPONENTS:
            continue
        if isinstance(component, nn.Module):
            identity[name] = module_fingerprint(component)
        elif hasattr(component, "model_max_length"):
            identity[name] = tokenizer_fingerprint(component)
        else:
            identity[name] = type(component).__name__
    return identity


def cache_folder(cache_dir: Path, identity: dict) -> Path:
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:KEY_LENGTH]
    return cache_dir / f"{identity['settings']['backbone']}-{key}"


def text_tensors(text: EncodedText, prefix: str) -> dict[str, torch.Tensor]:
    fields = {"tokens": text.tokens, "pooled": text.pooled, "mask": text.mask}
    return {f"{prefix}.{name}": value.contiguous() for name, value in fields.items() if value is not None}


def sample_tensors(sample: EncodedSample, prefix: str) -> dict[str, torch.Tensor]:
    tensors = text_tensors(sample.text, prefix)
    if sample.latents is not None:
        tensors[f"{prefix}.latents"] = sample.latents.contiguous()
    return tensors


def write_shard(folder: Path, number: int, samples: list[EncodedSample]) -> dict:
    path = folder / f"shard_{number:05d}.safetensors"
    tensors = {}
    for i, sample in enumerate(samples):
        tensors.update(sample_tensors(sample, str(i)))
    save_file(tensors, path)
    return {"file": path.name, "count": len(samples), "bytes": path.stat().st_size}


def write_shards(folder: Path, samples: Iterable[EncodedSample], shard_size: int) -> list[dict]:
    shards, buffer = [], []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) == shard_size:
            shards.append(write_shard(folder, len(shards), buffer))
            buffer = []
    if buffer:
        shards.append(write_shard(folder, len(shards), buffer))
    return shards


def write_cache(
    folder: Path,
    identity: dict,
    samples: Iterable[EncodedSample],
    null: EncodedText,
    latent_shape: tuple[int, int, int],
    real_data: bool,
    shard_size: int,
) -> None:
    """Write the samples in shards under a temporary name, then rename the complete folder into place
    (nothing is left behind when encoding fails)."""
    partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        shards = write_shards(partial, samples, shard_size)
        save_file(text_tensors(null, "null"), partial / NULL_FILE)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    index = {
        "format": FORMAT,
        "identity": identity,
        "count": sum(shard["count"] for shard in shards),
        "shards": shards,
        "null_bytes": (partial / NULL_FILE).stat().st_size,
        "latent_shape": list(latent_shape),
        "real_data": real_data,
    }
    (partial / INDEX_FILE).write_text(json.dumps(index, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    log.info("cached %d encoded samples in %s", index["count"], folder)


def cache_problem(folder: Path, index: dict, identity: dict) -> str | None:
    """Why the cache in ``folder`` must not be used, or None."""
    if index.get("format") != FORMAT:
        return f"it has format {index.get('format')}, this version reads {FORMAT}"
    if index.get("identity") != identity:
        return "it was built for other data, settings or encoders"
    expected = [(shard["file"], shard["bytes"]) for shard in index["shards"]] + [(NULL_FILE, index["null_bytes"])]
    for name, size in expected:
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes instead of {size} (truncated or overwritten)"
    if sum(shard["count"] for shard in index["shards"]) != index["count"]:
        return "its shard counts do not add up"
    for shard in index["shards"]:
        problem = shard_problem(folder / shard["file"], shard["count"])
        if problem is not None:
            return problem
    return shard_problem(folder / NULL_FILE, None)


def shard_problem(path: Path, count: int | None) -> str | None:
    """Why the shard at ``path`` cannot be read as ``count`` samples (None: the null file), from its header
    alone: a file overwritten with the same number of bytes passes the size check but not this one."""
    try:
        with safe_open(path, framework="pt") as handle:
            names = set(handle.keys())
    except (SafetensorError, OSError) as error:
        return f"{path.name} is not a readable safetensors file ({type(error).__name__}: {str(error)[:120]})"
    samples = {name.split(".")[0] for name in names}
    expected = {"null"} if count is None else {str(i) for i in range(count)}
    if samples != expected:
        return f"{path.name} does not hold the samples its index lists"
    return None


def open_cache(folder: Path, identity: dict) -> EncodedDataset | None:
    """The cached dataset, or None (logged) when there is none or it cannot be trusted."""
    try:
        index = json.loads((folder / INDEX_FILE).read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        log.warning("ignoring the cache in %s: its %s is unreadable (%s); rebuilding", folder, INDEX_FILE, error)
        return None
    problem = cache_problem(folder, index, identity)
    if problem is not None:
        log.warning("ignoring the cache in %s: %s; rebuilding", folder, problem)
        return None
    null = load_file(folder / NULL_FILE)
    null_text = EncodedText(null["null.tokens"], null.get("null.pooled"), null.get("null.mask"))
    samples = CachedSamples(folder, index["shards"])
    log.info("using %d cached encoded samples from %s", len(samples), folder)
    return EncodedDataset(samples, null_text, tuple(index["latent_shape"]), index["real_data"])


class CachedSamples(Sequence[EncodedSample]):
    """Samples read on demand from the memory-mapped shards."""

    def __init__(self, folder: Path, shards: list[dict]):
        self.paths = [folder / shard["file"] for shard in shards]
        self.starts = list(itertools.accumulate((shard["count"] for shard in shards), initial=0))
        self.handles: dict[int, tuple[object, set[str]]] = {}  # open shards and their tensor names

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> EncodedSample:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        shard = bisect.bisect_right(self.starts, index) - 1
        if shard not in self.handles:
            try:
                handle = safe_open(self.paths[shard], framework="pt")
            except (SafetensorError, OSError) as error:
                raise DataError(
                    f"the data cache file {self.paths[shard]} became unreadable during the run ({error}); delete "
                    f"{self.paths[shard].parent} and rerun: the data is encoded again"
                ) from None
            self.handles[shard] = (handle, set(handle.keys()))
        (handle, names), prefix = self.handles[shard], str(index - self.starts[shard])

        def get(name: str) -> torch.Tensor | None:
            key = f"{prefix}.{name}"
            return handle.get_tensor(key) if key in names else None

        return EncodedSample(EncodedText(get("tokens"), get("pooled"), get("mask")), get("latents"))
