"""Write scikit-learn's handwritten digits (1,797 grey 8×8 images, bundled with the package: nothing to
download) as an image–text folder in the Hugging Face imagefolder convention, to run the pixel-space job on
data other than Fashion-MNIST: ``metadata.jsonl`` with ``file_name``, a caption and the digit as ``label``.

    python benchmarks/digits_folder.py --out runs/digits_folder

Each image's caption is one of a few templates around the digit's word, drawn with a seeded generator, so
that a prompt has many images (within-prompt diversity needs several). benchmarks/image_folder.md has the
commands that train a teacher on it, distil and evaluate, and what they measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = ("a handwritten {}", "the digit {}", "a scanned {}", "{} written by hand")
DIGIT_MAX = 16  # the digits' pixel values run 0..16


def write_digits_folder(out: Path, seed: int = 0) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=False)
    lines = []
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        name = f"{index:04d}.png"
        Image.fromarray(np.round(pixels * 255 / DIGIT_MAX).astype(np.uint8), "L").save(out / name)
        caption = TEMPLATES[rng.integers(len(TEMPLATES))].format(WORDS[label])
        lines.append(json.dumps({"file_name": name, "text": caption, "label": int(label)}))
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/digits_folder"), help="a new folder")
    parser.add_argument("--seed", type=int, default=0, help="the caption draws")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; pass a new folder with --out")
    print(write_digits_folder(args.out, args.seed))


if __name__ == "__main__":
    main()
