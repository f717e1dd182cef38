"""Third-party warnings that every run of ``apexgen`` would print and that are known to be harmless here,
silenced by their exact messages on the loggers (or warning modules) that emit them; any other warning of
the same libraries still shows. Installed once by the command line (``apexgen.cli.main``), never on
import of the library, so a program that uses apexgen keeps every warning."""

from __future__ import annotations

import logging
import re
import warnings

# (logger, message pattern): what each says, and why it is harmless in apexgen.
KNOWN_LOG_MESSAGES = (
    # transformers without torchvision, on importing diffusers' pipelines: apexgen uses no image processor.
    (
        "transformers.utils.import_utils",
        r"`\w+ImageProcessor` requires torchvision \(not installed\); falling back to `\w+ImageProcessorPil`",
    ),
    # load_lora_weights of an export that holds only the transformer's LoRA (apexgen trains no text encoder).
    # The same warning for the transformer itself would mean the LoRA does not fit: it is not matched here.
    *(
        (name, r"No LoRA keys associated to \w+ found with the prefix='text_encoder(_\d)?'")
        for name in ("diffusers.loaders.lora_base", "diffusers.loaders.lora_pipeline", "diffusers.loaders.peft")
    ),
)
# (module, message pattern) of ``warnings.warn`` calls: peft, when a second adapter is added on purpose (DMD2's
# fake score next to the student's LoRA in one transformer).
KNOWN_WARNINGS = (
    (
        r"peft\.tuners\.tuners_utils",
        r"Already found a `peft_config` attribute in the model\. This will lead to having multiple adapters in "
        r"the model\. Make sure to know what you are doing!",
    ),
)


class DropMessages(logging.Filter):
    """Drops the records whose message starts with ``pattern``."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return self.pattern.match(record.getMessage()) is None


def silence_known_warnings() -> None:
    """Install the filters (again: no effect)."""
    for name, pattern in KNOWN_LOG_MESSAGES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(DropMessages(pattern))
    for module, pattern in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=UserWarning, module=module)
