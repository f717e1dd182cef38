"""Where the near-duplicate pairs of an evaluation sit: per class and per prompt, for the shipped teacher at
NFE 50 (CFG as given), distilled students (run folders of ``apexgen distill`` or the APEX study) and the real
test images (200 per class, pairs within a class). Same prompts, images and threshold as ``apexgen eval``
(``NEAR_DUPLICATE_PIXEL_DISTANCE``), so the totals are the evaluation's near-duplicate share.

    python benchmarks/near_duplicates_by_class.py --out benchmarks/results/near_duplicates_by_class.json \\
        --teacher-guidance 2 --students runs/apex_study/runs/apex_regression4_guidance2_u3000_s0

A candidate already in ``--out`` is not generated again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from apexgen.config import load
from apexgen.data.fashion_mnist import CLASS_NAMES, load_split
from apexgen.eval.diversity import pairwise_distances, within_groups
from apexgen.jobs.pixel.config import T2IConfig
from apexgen.jobs.pixel.evaluate import NEAR_DUPLICATE_PIXEL_DISTANCE, student_candidate, teacher_candidate
from apexgen.jobs.pixel.generate import generate
from apexgen.jobs.pixel.models import shipped_teacher
from apexgen.jobs.pixel.prompts import evaluation_prompts
from apexgen.text import text_encoder

REAL_PER_CLASS = 200


def by_class(distances: dict[int, torch.Tensor], label_of: dict[int, int], texts: dict[int, str]) -> dict:
    """Near-duplicate pairs / pairs per class, and the prompts with the most near-duplicate pairs."""
    classes: dict[str, list[int]] = {name: [0, 0] for name in CLASS_NAMES}
    prompts = []
    for group, values in distances.items():
        near = int((values < NEAR_DUPLICATE_PIXEL_DISTANCE).sum())
        counts = classes[CLASS_NAMES[label_of[group]]]
        counts[0] += near
        counts[1] += values.numel()
        prompts.append((near, texts.get(group, CLASS_NAMES[label_of[group]])))
    total = [sum(c[0] for c in classes.values()), sum(c[1] for c in classes.values())]
    worst = [{"near_duplicates": n, "prompt": p} for n, p in sorted(prompts, reverse=True)[:5] if n]
    return {"total": total, "share": total[0] / total[1], "classes": classes, "worst_prompts": worst}


def generated(candidate, nfe: int, guidance: float, config: T2IConfig, prompts, count: int) -> dict:
    candidate.network.eval()
    index = prompts.assignment(count)
    settings = config.eval
    images = generate(
        candidate.network, candidate.sampler, nfe, prompts.embeddings, index, prompts.null, guidance, settings.seed,
        settings.batch_size,
    ).images  # fmt: skip
    label_of = {g: int(prompts.labels[g]) for g in range(len(prompts.texts))}
    return by_class(within_groups(images, index), label_of, dict(enumerate(prompts.texts)))


def real(rng: torch.Generator) -> dict:
    test = load_split("test")
    distances = {}
    for label in range(len(CLASS_NAMES)):
        images = test.images[test.labels == label]
        distances[label] = pairwise_distances(
            images[torch.randperm(len(images), generator=rng)[:REAL_PER_CLASS]].flatten(1)
        )
    return by_class(distances, {label: label for label in distances}, {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/near_duplicates_by_class.json"))
    parser.add_argument("--teacher-guidance", type=float, nargs="*", default=[2.0])
    parser.add_argument("--students", type=Path, nargs="*", default=[])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    config = load(T2IConfig, {})
    prompts = evaluation_prompts(text_encoder(config.text))
    teacher = shipped_teacher()
    if "real_test" not in results:
        results["real_test"] = real(torch.Generator().manual_seed(0))
    for guidance in args.teacher_guidance:
        name = f"teacher_nfe50_cfg{guidance:g}"
        if name not in results:
            results[name] = generated(teacher_candidate(teacher, config), 50, guidance, config, prompts, args.samples)
    for run in args.students:
        if run.name not in results:
            candidate = student_candidate(teacher, run, config)
            results[run.name] = generated(candidate, 1, config.eval.guidance, config, prompts, args.samples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    for name, result in results.items():
        near = {c: n for c, (n, _) in result["classes"].items() if n}
        print(f"{name}: {100 * result['share']:.3f} % ({result['total'][0]} of {result['total'][1]} pairs): {near}")


if __name__ == "__main__":
    main()
