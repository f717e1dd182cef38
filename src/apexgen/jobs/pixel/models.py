"""The teacher and the students of the text-to-image job: a small ``SD3Transformer2DModel`` behind the SD3
adapter, saved and loaded in diffusers format; students as a LoRA (peft) on the frozen teacher, whose
adapter-disabled view is the reference, or as a fully fine-tuned copy next to a frozen one."""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

from safetensors import SafetensorError

from apexgen.backbones.lora import ADAPTER_NAME
from apexgen.backbones.sd3 import SD3Backbone
from apexgen.export import LORA_WEIGHTS, TRANSFORMER_FOLDER
from apexgen.jobs.pixel.config import DistillConfig, TeacherModelConfig
from apexgen.objectives import MethodsConfig
from apexgen.seeding import seeded_global_rng
from apexgen.students import Networks, prepare_networks
from apexgen.train.run_folder import TEACHER_SUMMARY_FILE

log = logging.getLogger(__name__)

TEACHER_INFO = TEACHER_SUMMARY_FILE  # the teacher's settings and training totals, beside its weights
SHIPPED_TEACHER = "fashion_mnist_teacher"  # in the package's assets/
SHIPPED_CLASSIFIER = "fashion_mnist_classifier"


class ModelFileError(RuntimeError):
    """A model folder that is missing, incomplete, corrupt or of the wrong shape; the message says which
    file and how to fix it."""


def shipped_asset(name: str) -> Path | None:
    """A folder in the package's ``assets/`` (the shipped teacher or classifier), if it is there."""
    path = Path(str(resources.files("apexgen") / "assets" / name))
    return path if path.is_dir() and any(path.iterdir()) else None


def shipped_teacher() -> Path | None:
    """The teacher trained by ``apexgen train-teacher`` that ships inside the package, if present."""
    path = shipped_asset(SHIPPED_TEACHER)
    return path if path is not None and (path / TRANSFORMER_FOLDER).is_dir() else None


def teacher_folder(path: Path | None) -> Path:
    """``path`` or, without one, the teacher that ships in the package (``--teacher`` of the commands)."""
    if path is not None:
        return path
    shipped = shipped_teacher()
    if shipped is None:
        raise ModelFileError(
            "no --teacher given and no teacher ships with this installation; train one with "
            "`apexgen train-teacher --out runs/teacher` and pass --teacher runs/teacher"
        )
    return shipped


def new_teacher(model: TeacherModelConfig, image_shape: tuple[int, int, int], seed: int) -> SD3Backbone:
    """A new teacher for images of ``image_shape`` (channels, side, side), initialised from ``seed``."""
    config = model.diffusers_config(image_shape)
    with seeded_global_rng(seed):  # parameter initialisation
        return SD3Backbone.from_config(config)


def image_shape(model: SD3Backbone) -> tuple[int, int, int]:
    """(channels, side, side) of the images a teacher or student of this job draws."""
    config = model.transformer.config
    return (config.in_channels, config.sample_size, config.sample_size)


def save_teacher(teacher: SD3Backbone, directory: Path, info: dict) -> None:
    teacher.transformer.save_pretrained(directory / TRANSFORMER_FOLDER)
    (directory / TEACHER_INFO).write_text(json.dumps(info, indent=1))


def load_teacher(directory: str | Path) -> SD3Backbone:
    """The teacher saved by ``save_teacher`` (``<dir>/transformer``), frozen and in eval mode."""
    directory = Path(directory)
    folder = directory / TRANSFORMER_FOLDER
    if not (folder / "config.json").is_file():
        raise ModelFileError(
            f"no teacher at {directory}: {folder}/config.json is missing; train one with "
            f"`apexgen train-teacher --out {directory}` or pass the folder it wrote"
        )
    try:
        teacher = SD3Backbone.from_pretrained(str(directory), subfolder=TRANSFORMER_FOLDER)
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        mismatch = config_mismatch(folder)
        if mismatch is not None:
            raise ModelFileError(
                f"the teacher's {folder / 'config.json'} does not match its weights ({mismatch}); the config was "
                "edited or comes from another teacher: restore the config.json saved with these weights"
            ) from None
        raise ModelFileError(
            f"the teacher in {folder} could not be read ({type(error).__name__}: "
            f"{str(error)[:300]}); the file is corrupt or truncated: retrain it or restore it"
        ) from None
    return teacher.requires_grad_(False).eval()


def config_mismatch(folder: Path) -> str | None:
    """How the weights in ``folder`` differ from what its config.json builds (tensor names and shapes, read
    from the safetensors headers and a weightless model); None when they agree or cannot be read."""
    from accelerate import init_empty_weights
    from safetensors import safe_open

    try:
        stored = {}
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(file, framework="pt") as handle:
                stored |= {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
        config = json.loads((folder / "config.json").read_text())
        with init_empty_weights():
            expected = SD3Backbone.from_config(config).transformer.state_dict()
    except (OSError, ValueError, TypeError, SafetensorError):  # unreadable: the caller says corrupt
        return None
    if not stored:
        return None
    shapes = {name: tuple(tensor.shape) for name, tensor in expected.items()}
    differ = [name for name in shapes.keys() & stored.keys() if shapes[name] != stored[name]]
    missing, unexpected = sorted(shapes.keys() - stored.keys()), sorted(stored.keys() - shapes.keys())
    if not (differ or missing or unexpected):
        return None
    found = [f"{len(differ)} of {len(shapes)} tensors differ in shape"] if differ else []
    if differ:
        name = sorted(differ)[0]
        found[0] += f", e.g. {name}: {stored[name]} in the weights, {shapes[name]} by config.json"
    found += [f"{len(missing)} missing from the weights, e.g. {missing[0]}"] if missing else []
    found += [f"{len(unexpected)} not in the model config.json describes, e.g. {unexpected[0]}"] if unexpected else []
    return "; ".join(found)


def make_student(teacher_dir: str | Path, config: DistillConfig, methods: MethodsConfig | None = None) -> Networks:
    """The teacher in ``teacher_dir`` turned into the networks ``config.method`` trains with ``methods``; new
    weights (peft's LoRA A matrices) are drawn from ``train.seed``, so a run with the same seed is the same run."""
    teacher = load_teacher(teacher_dir)
    with seeded_global_rng(config.train.seed):
        return prepare_networks(teacher, config.method, config.full_finetune, config.lora, methods)


def load_student(teacher_dir: str | Path, student_dir: str | Path) -> SD3Backbone:
    """A distilled student from its export: a LoRA (``pytorch_lora_weights.safetensors``) loaded onto the
    teacher, or a full transformer (``transformer/``)."""
    student_dir = Path(student_dir)
    if (student_dir / TRANSFORMER_FOLDER).is_dir():
        return load_teacher(student_dir)
    weights = student_dir / LORA_WEIGHTS
    if not weights.is_file():
        raise ModelFileError(
            f"{student_dir} holds neither {LORA_WEIGHTS} nor {TRANSFORMER_FOLDER}/: pass the "
            "export folder of `apexgen distill` (its export/ subfolder)"
        )
    model = load_teacher(teacher_dir)
    try:
        model.transformer.load_lora_adapter(
            str(student_dir), weight_name=LORA_WEIGHTS, adapter_name=ADAPTER_NAME, prefix="transformer"
        )
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:
        raise ModelFileError(
            f"{weights} does not fit the teacher in {teacher_dir} ({type(error).__name__}: "
            f"{str(error)[:300]}); was it distilled from another teacher or is it truncated?"
        ) from None
    check_lora_loaded(model, weights)
    return model.eval()


def check_lora_loaded(model: SD3Backbone, weights: Path) -> None:
    """peft skips keys that match no layer with only a warning: insist that every LoRA matrix was set."""
    from safetensors.torch import load_file

    expected = sum(1 for key in load_file(str(weights)) if "lora_" in key)
    loaded = sum(1 for name, _ in model.transformer.named_parameters() if "lora_" in name)
    if expected == 0 or loaded != expected:
        raise ModelFileError(
            f"{weights} holds {expected} LoRA matrices but {loaded} were loaded into the teacher; "
            "the file does not match this teacher"
        )
