"""The command line's answers to interruptions and conflicting flags: an exit code and one line, no traceback."""

import argparse
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import apexgen.jobs.pixel.train
from apexgen.cli import build_parser, main
from apexgen.config import load, load_yaml
from apexgen.jobs.pixel.config import DEMO, T2IConfig
from apexgen.jobs.real_backbones.bench_commands import BenchCommandSettings
from apexgen.jobs.real_backbones.command_settings import (
    ExportCommandSettings,
    GenerateCommandSettings,
    SampleCommandSettings,
)
from apexgen.jobs.real_backbones.config import RunConfig
from apexgen.jobs.toy.config import ToyConfig
from apexgen.known_warnings import DropMessages, silence_known_warnings
from apexgen.overrides import parse_overrides

RECIPES = Path(__file__).parents[1] / "configs"


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["distill", "--out", str(tmp_path / "run"), "--resume", "--overwrite"])
    assert stopped.value.code == 2
    assert "argument --overwrite: not allowed with argument --resume" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_ctrl_c_outside_training_exits_130_with_one_line(tmp_path, monkeypatch, caplog, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(apexgen.jobs.pixel.train, "train_teacher", interrupted)
    assert main(["train-teacher", "--out", str(tmp_path / "teacher")]) == 130
    assert [record.getMessage() for record in caplog.records] == ["interrupted by Ctrl-C"]
    assert "Traceback" not in caplog.text + "".join(capsys.readouterr())


def errors(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def test_conflicting_overrides_are_one_line_and_exit_2(tmp_path, caplog):
    assert main(["distill", "--out", str(tmp_path / "run"), "distill.train=3", "distill.train.steps=4"]) == 2
    assert errors(caplog) == [
        "config key 'distill.train': the overrides distill.train=3 and distill.train.steps=4 conflict: one gives "
        "'distill.train' a value, the other settings inside it; keep one of the two"
    ]
    assert not (tmp_path / "run").exists()


def test_a_config_file_that_is_not_utf8_exits_2(tmp_path, caplog):
    (tmp_path / "a.yaml").write_bytes("teacher:\n  steps: 4  # é\n".encode("latin-1"))
    assert main(["train-teacher", "--config", str(tmp_path / "a.yaml"), "--out", str(tmp_path / "t")]) == 2
    assert "is not UTF-8 text" in caplog.text and "save it as UTF-8" in caplog.text


@pytest.mark.parametrize("threads", ["-1", "0", "two"])
def test_threads_must_be_a_whole_number_of_at_least_one(threads, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--threads", threads, "toy", "--dry-run"])
    assert stopped.value.code == 2
    assert "argument --threads: " in capsys.readouterr().err


def help_example(command: str) -> list[str]:
    """The KEY=VALUE example in ``apexgen <command> --help``."""
    (sub,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    (overrides,) = [action for action in sub.choices[command]._actions if action.dest == "overrides"]
    return overrides.help.split("e.g. ")[1].split()


# The settings of the commands whose help example stands alone (each over its defaults, and for `sample` and
# `generate` the flags they require).
COMMAND_SETTINGS = {
    "export": (ExportCommandSettings, {}),
    "sample": (SampleCommandSettings, {"model": "m", "lora": "l", "prompt": "p"}),
    "generate": (GenerateCommandSettings, {"model": "m", "lora": "l", "prompts": "p.jsonl", "out": "o"}),
    "bench": (BenchCommandSettings, {}),
}


@pytest.mark.parametrize(
    "command", ["toy", "train-teacher", "distill", "eval", "demo", "train", "export", "sample", "generate", "bench"]
)
def test_each_commands_help_example_is_valid_for_that_command(command):
    example = parse_overrides(help_example(command))
    if command == "toy":
        load(ToyConfig, example)
    elif command == "train":
        load(RunConfig, load_yaml(RECIPES / "sd35_lora.yaml"), example)
    elif command in COMMAND_SETTINGS:
        settings, required = COMMAND_SETTINGS[command]
        load(settings, required, example)
    else:
        load(T2IConfig, DEMO if command == "demo" else {}, example)


@pytest.mark.parametrize("command", ["distill", "demo"])
def test_a_failing_config_is_told_before_torch_diffusers_or_peft_load(command):
    program = (
        f"import sys; from apexgen.cli import main; code = main(['{command}', 'methods.apex.mix_lambda=5']); "
        "print(code, sorted(name for name in ('diffusers', 'peft', 'transformers', 'scipy') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[0] == "2 []", result.stdout
    assert "methods.apex.mix_lambda" in result.stderr


def test_train_without_a_model_section_fails_the_same_with_dry_run(tmp_path, caplog):
    for extra in ([], ["--dry-run"]):
        caplog.clear()
        assert main(["train", f"out={tmp_path / 'run'}", *extra]) == 2
        (message,) = errors(caplog)
        assert message.startswith("config key 'model.backbone': required")
        assert "sd3, flux, qwen_image, sana, z_image" in message
    assert not (tmp_path / "run").exists()


def test_known_harmless_warnings_are_silenced_and_others_kept():
    silence_known_warnings()
    silence_known_warnings()  # once: no second filter
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    messages = {
        "transformers.utils.import_utils": [
            "`CLIPImageProcessor` requires torchvision (not installed); falling back to `CLIPImageProcessorPil` for "
            "backward compatibility. Install torchvision to use the default backend",
            "`Foo` requires something else",
        ],
        "diffusers.loaders.lora_base": [
            "No LoRA keys associated to NoneType found with the prefix='text_encoder_2'. This is safe to ignore",
            "No LoRA keys associated to SD3Transformer2DModel found with the prefix='transformer'. This is safe",
        ],
    }
    for name, lines in messages.items():
        logger, handler = logging.getLogger(name), Keep()
        assert sum(isinstance(f, DropMessages) for f in logger.filters) == 1
        logger.addHandler(handler)
        try:
            for line in lines:
                logger.warning(line)
        finally:
            logger.removeHandler(handler)
    assert seen == [messages["transformers.utils.import_utils"][1], messages["diffusers.loaders.lora_base"][1]]
    peft = (
        "Already found a `peft_config` attribute in the model. This will lead to having multiple adapters in the "
        "model. Make sure to know what you are doing!"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()
        for message in (peft, "another peft warning"):
            warnings.warn_explicit(message, UserWarning, "tuners_utils.py", 1, module="peft.tuners.tuners_utils")
    assert [str(w.message) for w in caught] == ["another peft warning"]


def test_importing_the_library_silences_nothing():
    program = (
        "import logging, apexgen.jobs.pixel.models, apexgen.cli; from apexgen.known_warnings import DropMessages; "
        "print(any(isinstance(f, DropMessages) for logger in logging.root.manager.loggerDict.values() "
        "for f in getattr(logger, 'filters', ())))"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
