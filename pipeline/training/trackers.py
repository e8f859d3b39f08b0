"""Experiment trackers: the Trainer's own integrations, named by `training.report_to`.

TensorBoard (the default) is attached by stage 3 itself so that its events land in <run-dir>/logs/tensorboard
(pipeline/training/trainer.py:tensorboard_callback); every other name is handed to the Trainer's
`report_to` with the run directory's name as the run name. A name the Trainer does not know, or a tracker
that is not installed, is one line before stage 1 — not an ImportError after hours of tokenizing.
"""

from gpt2zh.errors import UserError

TENSORBOARD = "tensorboard"
NONE = "none"
FLAG = "--training-report-to"
INSTALL = {"swanlab": "swanlab", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
           "clearml": "clearml", "neptune": "neptune", "dvclive": "dvclive", "trackio": "trackio",
           "codecarbon": "codecarbon", "azure_ml": "azureml-core", "dagshub": "dagshub", "flyte": "flytekit"}


def chosen(names: list[str]) -> list[str]:
    """The trackers asked for; `none` (alone) means none, TensorBoard included."""
    return [] if names in ([], [NONE]) else list(dict.fromkeys(names))


def check_trackers(names: list[str]) -> None:
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    wanted = chosen(names)
    if NONE in wanted:
        raise UserError(f"{FLAG} {' '.join(names)}: `none` cannot be combined with trackers",
                        f"pass {FLAG} none alone, or only tracker names")
    available = set(get_available_reporting_integrations())
    for name in wanted:
        if name not in INTEGRATION_TO_CALLBACK:
            raise UserError(f"{FLAG} {name}: not one of the Trainer's integrations",
                            f"use one of {', '.join(sorted(INTEGRATION_TO_CALLBACK))}, or none")
        if name not in available:
            raise UserError(f"{FLAG} {name}: {name} is not installed (or not usable) in this environment",
                            f"pip install {INSTALL.get(name, name)} and log in as its documentation says, or drop "
                            f"it ({TENSORBOARD} is the default)")


def trainer_report_to(names: list[str]) -> list[str] | str:
    """What TrainingArguments.report_to gets: every tracker but TensorBoard, which stage 3 attaches itself."""
    return [name for name in chosen(names) if name != TENSORBOARD] or NONE


def wants_tensorboard(names: list[str]) -> bool:
    return TENSORBOARD in chosen(names)


def log_contents(names: list[str]) -> str:
    """What stage 3 writes into logs/, as the summaries list it."""
    return "training_history.csv, loss.png, samples.md" + (", tensorboard/" if wants_tensorboard(names) else "")
