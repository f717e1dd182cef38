"""``apexgen eval``: every model at every NFE on the held-out prompts, with the same noise: FID against the
held-out images (the Fashion-MNIST test split, or a folder's held-out split; bundled Inception-v3), prompt
adherence where the data has classes (the in-project classifier's accuracy on the prompt's class),
diversity within a prompt (mean pairwise Inception-feature distance and pixel distance), the share of
near-duplicate pairs within a prompt (collapse) and seconds per image. Sample grids per model.

Each scored row is also kept in ``rows/`` under the output folder with what it was measured with (the
evaluation and text settings, the method, NFE and a hash of the network's weights); a rerun with the same
ones reuses it, so an evaluation that stopped part-way (N = 5,000 takes hours on a CPU) continues where it
was."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from apexgen.eval.classifier import PromptClassifier, load_classifier, load_or_train_classifier
from apexgen.eval.diversity import near_duplicate_share, prompt_diversity
from apexgen.eval.fid import (
    FeatureStatistics,
    feature_statistics,
    frechet_distance,
    inception_features,
    reference_statistics,
)
from apexgen.jobs.pixel.config import T2IConfig
from apexgen.jobs.pixel.data import PixelData, open_data
from apexgen.jobs.pixel.generate import Sampler, generate
from apexgen.jobs.pixel.models import SHIPPED_CLASSIFIER, TEACHER_INFO, load_student, load_teacher, shipped_asset
from apexgen.jobs.pixel.prompts import EvaluationPrompts
from apexgen.jobs.pixel.run_folders import read_student_run
from apexgen.jobs.pixel.train import check_fits, preview_grid
from apexgen.text import text_encoder
from apexgen.train.run_folder import EXPORT_FOLDER

log = logging.getLogger(__name__)

# Two images of one prompt closer than this in pixels (L2 over 32×32 in [−1, 1]; RMS 0.19 per pixel) count as
# near-duplicates: 0.3 % of the shipped teacher's NFE-50 pairs and 0.2 % of real within-class test pairs are
# (benchmarks/near_duplicate_threshold.py, results/near_duplicates.json; N = 1,200). Images of another size
# or channel count keep the RMS: the distance scales with the square root of their values per image.
NEAR_DUPLICATE_PIXEL_DISTANCE = 6.0
NEAR_DUPLICATE_RMS = NEAR_DUPLICATE_PIXEL_DISTANCE / 32
# What a row measures; part of its key, so that a row kept before a metric existed is scored again.
METRICS = ("fid", "accuracy", "diversity", "pixel_diversity", "near_duplicates", "seconds_per_image")


@dataclass
class Candidate:
    """A model to evaluate: the teacher or a distilled student, with what its training cost."""

    method: str
    sampler: Sampler
    network: nn.Module
    nfe: tuple[int, ...]
    train_seconds: float
    peak_memory_mb: float
    trainable_parameters: int


def teacher_candidate(teacher_dir: Path, config: T2IConfig) -> Candidate:
    info = json.loads((teacher_dir / TEACHER_INFO).read_text()) if (teacher_dir / TEACHER_INFO).is_file() else {}
    result = info.get("result", {})
    network = load_teacher(teacher_dir)
    return Candidate(
        "teacher",
        "teacher",
        network,
        config.eval.teacher_nfe,
        result.get("seconds", float("nan")),
        result.get("peak_memory_mb", float("nan")),
        sum(p.numel() for p in network.parameters()),
    )


def student_candidate(teacher_dir: Path, run_dir: Path, config: T2IConfig) -> Candidate:
    """A student from the folder ``apexgen distill`` wrote (its run.json and export/)."""
    info = read_student_run(run_dir)
    network = load_student(teacher_dir, run_dir / EXPORT_FOLDER)
    return Candidate(
        info["method"],
        "student",
        network,
        config.eval.student_nfe,
        info["train_seconds"],
        info["peak_memory_mb"],
        info["trainable_parameters"],
    )


@dataclass
class Scorer:
    """What every row is measured against: the prompts, the FID reference and the classifier (None: the
    data has no classes)."""

    prompts: EvaluationPrompts
    reference: FeatureStatistics
    classifier: PromptClassifier | None
    config: T2IConfig
    data: PixelData

    @property
    def near_duplicate_distance(self) -> float:
        return NEAR_DUPLICATE_RMS * math.prod(self.data.image_shape) ** 0.5

    def score(self, candidate: Candidate, nfe: int) -> dict:
        settings = self.config.eval
        index = self.prompts.assignment(settings.fid.samples)
        generated = generate(
            candidate.network,
            candidate.sampler,
            nfe,
            self.prompts.embeddings,
            index,
            self.prompts.null,
            settings.guidance,
            settings.seed,
            settings.batch_size,
        )
        features = inception_features(generated.images, settings.fid.batch_size)
        fid = frechet_distance(feature_statistics(features), self.reference, settings.fid.matrix_sqrt)
        row = {
            "method": candidate.method,
            "nfe": nfe,
            "forward_passes": nfe * (2 if candidate.sampler == "teacher" and settings.guidance != 1 else 1),
            "fid": fid,
            "accuracy": self.accuracy(generated.images, index),
            "diversity": prompt_diversity(features, index).mean,
            "pixel_diversity": prompt_diversity(generated.images, index).mean,
            "near_duplicates": near_duplicate_share(generated.images, index, self.near_duplicate_distance),
            "seconds_per_image": generated.seconds_per_image,
            "train_seconds": candidate.train_seconds,
            "peak_memory_mb": candidate.peak_memory_mb,
            "trainable_parameters": candidate.trainable_parameters,
            "samples": settings.fid.samples,
        }
        log.info(
            "%s NFE %d: FID %.2f, accuracy %s, diversity %.2f (pixels %.2f, near-duplicates %.1f %%), %.4f s/image",
            candidate.method,
            nfe,
            row["fid"],
            "—" if row["accuracy"] is None else f"{row['accuracy']:.3f}",
            row["diversity"],
            row["pixel_diversity"],
            100 * row["near_duplicates"],
            row["seconds_per_image"],
        )
        return row

    def accuracy(self, images: torch.Tensor, index: torch.Tensor) -> float | None:
        if self.classifier is None:
            return None
        return self.classifier.accuracy(images, self.prompts.labels[index])


def weights_fingerprint(network: nn.Module) -> str:
    """SHA-256 of every tensor of the network's state (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def row_key(candidate: Candidate, nfe: int, judge: Scorer) -> dict:
    """Everything a row's figures depend on (the NFE lists and grid size of the run do not)."""
    config = judge.config
    settings = dataclasses.asdict(config.eval)
    for name in ("teacher_nfe", "student_nfe", "grid_seeds"):
        settings.pop(name)
    return {
        "method": candidate.method,
        "nfe": nfe,
        "metrics": list(METRICS),
        "weights": weights_fingerprint(candidate.network),
        "eval": settings,
        "text": dataclasses.asdict(config.text),
        "data": judge.data.name,
    }


def kept_row(path: Path) -> dict | None:
    """The {"key", "row"} record at ``path``; None if there is none or it is unreadable (then logged)."""
    if not path.is_file():
        return None
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        log.warning("scoring again: %s is unreadable (%s)", path, error)
        return None
    if not (isinstance(kept, dict) and isinstance(kept.get("row"), dict)):
        log.warning("scoring again: %s is not a kept row", path)
        return None
    return kept


def kept_or_scored_row(judge: Scorer, candidate: Candidate, nfe: int, folder: Path) -> dict:
    """The row kept in ``folder`` for exactly this key, else a new score (then kept there)."""
    key = json.loads(json.dumps(row_key(candidate, nfe, judge)))  # tuples → lists, as read back
    path = folder / f"{candidate.method}_nfe{nfe}.json"
    kept = kept_row(path)
    if kept is not None and kept.get("key") == key:
        log.info("%s NFE %d: reusing the row in %s (same weights and settings)", candidate.method, nfe, path)
        return kept["row"]
    if kept is not None:
        log.info(
            "%s NFE %d: %s was measured with other weights or settings; scoring again", candidate.method, nfe, path
        )
    row = judge.score(candidate, nfe)
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps({"key": key, "row": row}, indent=1))
    partial.replace(path)
    return row


def prompt_classifier(config: T2IConfig, data: PixelData) -> PromptClassifier | None:
    """None when the data has no classes; else the classifier that ships in the package when it was trained on
    this data with these settings, or the one cached for this data under ``eval.classifier.cache_dir``
    (trained and cached there first if there is none)."""
    if not data.has_classes:
        log.info("the data has no classes: no accuracy is scored")
        return None
    shipped = shipped_asset(SHIPPED_CLASSIFIER) if data.shipped_classifier else None
    settings = config.eval.classifier
    if shipped is not None:
        try:
            return load_classifier(settings, shipped)
        except ValueError as error:
            log.info("not using the shipped classifier (%s)", error)
    if not data.shipped_classifier:  # one cache per data set (Fashion-MNIST's stays where it was)
        settings = dataclasses.replace(settings, cache_dir=str(Path(settings.cache_dir) / data.name))
    return load_or_train_classifier(settings, data.classifier_splits)


def scorer(config: T2IConfig) -> Scorer:
    encoder, data = text_encoder(config.text), open_data(config.data)
    classifier = prompt_classifier(config, data)
    reference, count = data.reference(config.eval.fid.samples)
    if count < config.eval.fid.samples:
        log.info("FID reference: all %d held-out images (fewer than the %d generated)", count, config.eval.fid.samples)
    statistics = reference_statistics(dataclasses.replace(config.eval.fid, samples=count), reference)
    return Scorer(data.prompts(encoder), statistics, classifier, config, data)


def evaluate(candidates: list[Candidate], config: T2IConfig, out: Path) -> dict:
    """Score every candidate at each of its NFE; write report.json and one class × seed grid per candidate."""
    out.mkdir(parents=True, exist_ok=True)
    judge = scorer(config)
    rows = []
    for candidate in candidates:
        check_fits(candidate.network, judge.data, f"the model {candidate.method!r}")
    for candidate in candidates:
        candidate.network.eval()
        for nfe in candidate.nfe:
            rows.append(kept_or_scored_row(judge, candidate, nfe, out / "rows"))
        grid_nfe = max(candidate.nfe) if candidate.sampler == "teacher" else 1
        preview_grid(
            candidate.network,
            candidate.sampler,
            grid_nfe,
            judge.prompts,
            config,
            out / f"grid_{candidate.method}_nfe{grid_nfe}.png",
        )
    report = {
        "rows": rows,
        "data": judge.data.title,
        "reference": judge.data.reference_title,
        "reference_samples": judge.reference.count,
        "classifier_test_accuracy": judge.classifier.report.test_accuracy if judge.classifier else None,
        "samples": config.eval.fid.samples,
        "guidance": config.eval.guidance,
        "near_duplicate_distance": judge.near_duplicate_distance,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report
