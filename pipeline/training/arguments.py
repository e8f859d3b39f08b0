"""TrainingArguments from the config and the plan, with transformers 5's current argument names
(`activation_checkpointing`, not the deprecated `gradient_checkpointing`; `tf32` left unset where
it is not eligible, since `tf32=True` raises on CPU)."""

from pathlib import Path

from gpt2zh.config.schema import Config
from gpt2zh.training.plan import TrainingPlan
from gpt2zh.training.trackers import trainer_report_to


def training_arguments(config: Config, plan: TrainingPlan, checkpoints_dir: Path):
    from transformers import TrainingArguments

    return TrainingArguments(**argument_values(config, plan, checkpoints_dir))


def argument_values(config: Config, plan: TrainingPlan, checkpoints_dir: Path) -> dict:
    """The keyword arguments, as data: tests check them for every fabricated GPU without that GPU."""
    training, optimization, checkpoint = config.training, config.optimization, config.checkpoint
    extra = {"tf32": True} if plan.tf32 else {}
    if plan.torch_compile:
        extra.update(torch_compile=True, torch_compile_mode=plan.compile_mode)
    if plan.activation_checkpointing:
        extra["activation_checkpointing"] = True
    return dict(
        output_dir=str(checkpoints_dir),
        max_steps=training.max_steps,
        per_device_train_batch_size=plan.per_device_batch_size,
        per_device_eval_batch_size=plan.per_device_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        learning_rate=optimization.learning_rate,
        # no lr_scheduler_type: PretrainTrainer.create_scheduler builds pipeline/training/schedule.py's schedule
        warmup_steps=optimization.warmup_steps,
        weight_decay=optimization.weight_decay,
        adam_beta1=optimization.adam_beta1,
        adam_beta2=optimization.adam_beta2,
        max_grad_norm=optimization.max_grad_norm,
        optim=plan.optimizer,
        bf16=plan.precision == "bf16",
        fp16=plan.precision == "fp16",
        use_cpu=plan.device == "cpu",
        dataloader_num_workers=plan.dataloader_workers,
        dataloader_persistent_workers=plan.persistent_workers,
        dataloader_pin_memory=plan.pin_memory,
        # False: the training stream (GlobalStreamSampler) always yields whole optimizer steps, so only
        # evaluation could have a partial last batch, and dropping it would skip a validation split
        # smaller than one batch entirely (and the remainder of every larger one).
        dataloader_drop_last=False,
        eval_strategy="steps",
        eval_steps=training.eval_steps,
        eval_on_start=True,  # the initial validation loss is the yardstick of the whole run
        prediction_loss_only=True,
        logging_strategy="steps",
        logging_steps=training.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=checkpoint.save_steps,
        save_total_limit=checkpoint.save_total_limit,
        seed=training.seed,
        full_determinism=training.full_determinism,
        ignore_data_skip=True,  # GlobalStreamSampler resumes at the right sample itself, in O(1)
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,  # every GPT-2 parameter gets a gradient
        # TensorBoard is attached explicitly, writing to <run-dir>/logs/tensorboard; other trackers by the Trainer
        report_to=trainer_report_to(training.report_to),
        run_name=checkpoints_dir.parent.name,
        log_level="warning",
        **extra,
    )
