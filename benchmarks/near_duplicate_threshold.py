"""Calibrates the pixel distance under which two images of one prompt count as near-duplicates
(``apexgen.jobs.pixel.evaluate.NEAR_DUPLICATE_PIXEL_DISTANCE``): the within-prompt pixel distances of the shipped
teacher at NFE 50 (CFG 3) and at NFE 1, and the within-class distances of real test images.

    python benchmarks/near_duplicate_threshold.py --samples 1200 --out benchmarks/results/near_duplicates.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from apexgen.data.fashion_mnist import load_split
from apexgen.eval.diversity import within_groups
from apexgen.jobs.pixel.config import GUIDANCE
from apexgen.jobs.pixel.generate import generate
from apexgen.jobs.pixel.models import load_teacher, shipped_teacher
from apexgen.jobs.pixel.prompts import evaluation_prompts
from apexgen.text import TextEncoderConfig, text_encoder

QUANTILES = (0.001, 0.005, 0.01, 0.05, 0.5)


def summary(distances: torch.Tensor) -> dict:
    values = torch.quantile(distances.float(), torch.tensor(QUANTILES)).tolist()
    return {
        "pairs": len(distances),
        "mean": distances.mean().item(),
        "quantiles": dict(zip(map(str, QUANTILES), values, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/near_duplicates.json"))
    args = parser.parse_args()
    prompts = evaluation_prompts(text_encoder(TextEncoderConfig()))
    teacher = load_teacher(shipped_teacher())
    index = prompts.assignment(args.samples)
    result = {"samples": args.samples}
    for nfe in (50, 1):
        images = generate(teacher, "teacher", nfe, prompts.embeddings, index, prompts.null, GUIDANCE, 0, 200).images
        result[f"teacher_nfe{nfe}"] = summary(torch.cat(list(within_groups(images, index).values())))
    test = load_split("test")
    count = min(args.samples, len(test))
    result["real_test_within_class"] = summary(
        torch.cat(list(within_groups(test.images[:count], test.labels[:count]).values()))
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
