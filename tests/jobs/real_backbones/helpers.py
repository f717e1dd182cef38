"""Tiny stock pipelines saved with ``save_pretrained`` (loaded back by the commands as a user's model
folder would be), image folders, and the settings that make a run take seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from apexgen.cli import main
from tests.data.files import image_folder
from tests.data.tiny_pipelines import MAX_SEQUENCE_LENGTH, SIDE, tiny_pipeline

# VAEs whose pipelines add a shift factor when decoding; the tiny AutoencoderKL has none (None breaks decoding).
SHIFTED_VAES = ("sd3", "flux", "z_image")
PROMPTS = "[a red cat, a blue dog]"


class ModelFolders:
    """One saved tiny pipeline per backbone, written on first use."""

    def __init__(self, root: Path):
        self.root, self.saved = root, {}

    def __call__(self, name: str) -> Path:
        if name not in self.saved:
            pipeline = tiny_pipeline(name)
            if name in SHIFTED_VAES:
                pipeline.vae.register_to_config(shift_factor=0.0)
            pipeline.save_pretrained(self.root / name)
            self.saved[name] = self.root / name
        return self.saved[name]


def train_arguments(name: str, model: Path, data: Path, out: Path, *overrides: str) -> list[str]:
    """``apexgen train`` of 2 APEX steps with a rank-4 LoRA, fp32, a pool of 4 teacher endpoints,
    checkpoints and previews every step."""
    return [
        "train",
        f"model.backbone={name}",
        f"model.path={model}",
        "model.dtype=fp32",
        "model.lora.rank=4",
        "model.lora.alpha=4",
        f"data.path={data}",
        f"data.resolution={SIDE}",
        f"data.max_sequence_length={MAX_SEQUENCE_LENGTH[name]}",
        "train.steps=2",
        "train.batch_size=2",
        "train.precision=fp32",
        "train.log_every=1",
        "train.checkpoint_every=1",
        "train.preview_every=1",
        "train.progress=false",
        "train.tensorboard=false",
        "methods.apex.regression_pairs=4",  # the regression anchor's pool of teacher endpoints
        "methods.apex.regression_steps=2",
        f"samples.prompts={PROMPTS}",
        f"out={out}",
        *overrides,
    ]


def images(folder: Path) -> Path:
    return image_folder(folder) if not (folder / "metadata.jsonl").is_file() else folder


def sample(model: Path, export: Path, out: Path, steps: int = 1) -> Image.Image:
    """``apexgen sample`` of an export with the stock pipeline of ``model``: the image it wrote."""
    arguments = ["sample", "--model", str(model), "--lora", str(export), "--prompt", "a red cat"]
    assert main([*arguments, "--steps", str(steps), "--resolution", str(SIDE), "--out", str(out)]) == 0
    with Image.open(out) as picture:
        picture.load()
    return picture
