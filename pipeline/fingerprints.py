"""What each stage's output depends on, in one place, so a later stage can tell whether an earlier
stage's output on disk belongs to the current corpus and config (a tokenizer "from another run")."""

from gpt2zh.config import Config, fingerprint_fields
from gpt2zh.corpus.digests import content_digests
from gpt2zh.corpus.sources import Source
from gpt2zh.manifests import DatasetManifest, TokenizerManifest
from gpt2zh.rundir import fingerprint

# Bump when a stage's output layout changes, so older outputs are rebuilt instead of misread.
TOKENIZER_FORMAT = 2
DATASET_FORMAT = 1
MODEL_FORMAT = 1


def _source_fingerprints(sources: list[Source]) -> list[list]:
    """Every source's fingerprint; the local files this machine has not hashed yet are hashed first, together
    under one progress bar (a new machine's first command, PITFALLS.md RA1)."""
    content_digests([source.path for source in sources if source.origin is None])
    return [source.fingerprint() for source in sources]


def tokenizer_inputs(config: Config, sources: list[Source], base_model: dict | None = None) -> dict:
    """base_model: the identity of the model whose tokenizer is adopted (`--model-init-from`,
    pipeline/models/source.py:ModelSource.identity); the weights stage 3 starts from inherit it."""
    parts = {"format": TOKENIZER_FORMAT,
             "config": fingerprint_fields(config, ("data", "tokenizer"), "tokenizer"),
             "sources": _source_fingerprints(sources)}
    if config.model.init_from:
        parts["base_model"] = base_model or {"reference": config.model.init_from}
    return parts


def recorded_base_model(config: Config, tokenizer: TokenizerManifest | None) -> dict | None:
    """The base model stage 1 adopted, when it is the one this config names: later stages compare against it
    without a download (stage 1 itself looks again, and sees a Hub branch that moved on)."""
    recorded = tokenizer.inputs.get("base_model") if tokenizer is not None else None
    return recorded if recorded and recorded.get("reference") == config.model.init_from else None


def dataset_inputs(config: Config, sources: list[Source], tokenizer: TokenizerManifest | None) -> dict:
    """tokenizer: None when this command rebuilds it (its fingerprint is not known yet)."""
    parts = {"format": DATASET_FORMAT,
             "config": fingerprint_fields(config, ("data",), "dataset"),
             "sources": _source_fingerprints(sources),
             "tokenizer": tokenizer.fingerprint if tokenizer is not None else "(rebuilt by this command)"}
    if tokenizer is not None and tokenizer.text_format is not None:
        # Its file too (PITFALLS.md NU17): an older tokenizer retrained with --force in the newer text format
        # has the same inputs and other ids. Tokenizers without the field keep their datasets' fingerprints.
        parts["tokenizer_sha256"] = tokenizer.tokenizer_sha256
    return parts


def expected_tokenizer_fingerprint(config: Config, sources: list[Source], tokenizer: TokenizerManifest | None) -> str:
    return fingerprint(tokenizer_inputs(config, sources, recorded_base_model(config, tokenizer)))


def training_inputs(config: Config, tokenizer: TokenizerManifest | None, datasets: list[DatasetManifest],
                    precision: str | None = None) -> dict:
    """What the trained weights depend on. Hardware-only choices (per-device batch, compile, workers,
    TF32, preset) are left out: the same run on another GPU is the same run. `precision` is the one the
    plan resolved: `auto` and the fp32 a CPU preset names are the same training. tokenizer None: its
    settings only, before stage 1 ran (what preflight compares)."""
    fields = fingerprint_fields(config, ("model", "training", "optimization"), "pretrain")
    if precision is not None:
        fields["training"]["precision"] = precision
    return {"format": MODEL_FORMAT,
            "config": fields,
            "tokenizer": tokenizer.fingerprint if tokenizer is not None else "",
            # its files too: a tokenizer trained again from the same inputs need not give the same ids (RA5)
            "tokenizer_sha256": tokenizer.tokenizer_sha256 if tokenizer is not None else None,
            "dataset": [manifest.fingerprint for manifest in datasets]}


# The plan for future steps, not what made the weights so far (PITFALLS.md RA2): a checkpoint stays this run's
# when they change (a run trained longer), while model/ (the finished result) does not.
PLAN_FIELDS = {"training": ("max_steps",)}


def weights_inputs(inputs: dict) -> dict:
    """training_inputs without the plan for future steps: what a checkpoint's weights depend on."""
    config = {group: {key: value for key, value in fields.items() if key not in PLAN_FIELDS.get(group, ())}
              for group, fields in inputs["config"].items()}
    return {**inputs, "config": config}
