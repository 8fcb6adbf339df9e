"""Train a TransformNet for one style, or a bank of styles, with ``Model.fit``.

    python -m ml.train --style PAINTING --data var/photos/train --out runs/starry \\
        [--preset fast|balanced|johnson] [any TrainConfig flag]
    python -m ml.train --paintings A,B,C --data ... --out runs/bank      # a bank
    python -m ml.train --init-weights runs/bank/transform_net.keras \\
        --train-slot 4 --style D --data ... --out runs/bank-d         # one slot of it
    python -m ml.train ... --export-to serving/models/my-bank         # and export it

A bank (``ml.bank``) is trained jointly: every example gets a random slot, slot 0
(the identity) with the content loss only, slot ``i`` against painting ``i``. A slot
fine-tune trains only that slot's conditional-norm rows, everything else frozen, and
the saved net takes every other weight from ``--init-weights`` unchanged.

:func:`train` runs the stages in order: the pre-flight checks (``ml.preflight``), the
bank plan (``ml.bank_plan``), the trainer (``ml.trainer``: a ``keras.Model`` whose
``compute_loss`` is the perceptual loss, in the precision of ``ml.precision``), the
input ``fit`` iterates (``ml.fit_input``), then Keras' own ``fit``, on the tensorflow,
jax and torch backends. The callbacks (``ml.callbacks``) stop on divergence naming the
last good checkpoint, write verified atomic checkpoints (``ml.checkpoints``), stop after
``--max-seconds``, log every weighted loss term (per style layer too) to the progress
bar and TensorBoard, and draw sample images.

Outputs in ``out_dir``: ``config.json``, ``transform_net.keras`` (the final model in
float32, config + weights), ``checkpoints/``, ``logs/`` (TensorBoard), ``samples/``.
With ``--export-to MODEL_DIR`` the network is also exported as the next version under
``MODEL_DIR``, the folder TF Serving loads (:func:`train_servable`, ``ml.servable``).
The settings are :class:`ml.config.TrainConfig`; the reasons for their defaults are
in ``docs/design/training.md``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import keras

from ml import bank, checkpoints
from ml.bank_plan import bank_plan
from ml.callbacks import (
    AtomicCheckpoint,
    DivergenceMonitor,
    DivergenceStop,
    GlobalStepTensorBoard,
    ProgressHook,
    RunState,
    SampleImages,
    StepLog,
    TimeLimit,
    TrainProgress,
    tensorboard_available,
)
from ml.checkpoints import TrainingDiverged, latest_checkpoint, load_checkpoint
from ml.config import FLAG_FIELDS, TrainConfig, add_arguments, config_from_args
from ml.data import SkipCounter
from ml.fit_input import SlotSampler, default_dataset, fit_input
from ml.preflight import CannotTrain, check_can_train
from ml.servable import ServableVersion, described_slots, settings_record
from ml.trainer import build_trainer, float32_copy

__all__ = [
    "FINAL_MODEL_NAME",
    "TrainResult",
    "build_parser",
    "parse_args",
    "train",
    "train_servable",
    "training_callbacks",
]

FINAL_MODEL_NAME = "transform_net.keras"


@dataclass
class TrainResult:
    steps: int  # global step reached (includes steps done before a resume)
    steps_this_run: int
    seconds: float
    final_losses: dict[str, float]
    mean_losses: dict[str, float]
    model_path: Path  # transform_net.keras: config + final weights
    model: keras.Model  # float32, whatever precision it trained in
    precision: str = "float32"
    skipped_photos: int = 0
    last_checkpoint: Path | None = None
    config: TrainConfig | None = None  # what was trained (a slot fine-tune: the bank's shape)


def train(
    config: TrainConfig,
    *,
    dataset=None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    callbacks: Iterable[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train (or resume) a style with ``fit``; see the module docstring for what is written.

    ``dataset``: a ``tf.data.Dataset``, a ``keras.utils.PyDataset`` or a list of
    float (batch, H, W, 3) arrays in [0, 255]; default: ``config.data_dir``'s photos.
    ``callbacks`` run after the run's own (``training_callbacks``), e.g. the bank run's
    held-out scores (``ml.bank_run``).
    Raises ``ml.preflight.CannotTrain`` before anything runs when an input is missing
    (see ``ml.preflight.check_can_train``), ``ml.checkpoints.TrainingDiverged`` (naming
    the last good checkpoint) on divergence.
    """
    check_can_train(config, needs_photos=dataset is None)
    out_dir = Path(config.out_dir)
    if not config.resume:
        checkpoints.set_aside_earlier_checkpoints(out_dir)
    checkpoint = latest_checkpoint(out_dir) if config.resume else None
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    plan = bank_plan(config)
    config = plan.applied_to(config)
    trainer = build_trainer(config, plan)
    start_step = 0
    if checkpoint is not None:
        start_step = load_checkpoint(trainer, checkpoint)
        # A different seed after a resume, so the data order is not replayed.
        keras.utils.set_random_seed(config.seed + start_step)
    elif config.init_weights and config.train_slot is None:
        trainer.transform_net.load_weights(config.init_weights)

    skips = SkipCounter()
    if dataset is None:
        dataset = default_dataset(config, config.seed + start_step, skips)
    checkpoints.write_json(out_dir / "config.json", config.as_dict())

    state = RunState(start_step=start_step, steps=config.steps, term_names=trainer.term_names)
    if config.steps > start_step:
        sampler = SlotSampler(plan.choices, config.seed)
        sample_photos, batches = fit_input(dataset, start_step=start_step,
                                           warmup_steps=config.style_warmup_steps,
                                           slots=sampler, batch=config.batch)
        trainer.fit(
            batches,
            epochs=1,
            shuffle=False,  # the photo pipeline shuffles
            steps_per_epoch=config.steps - start_step,
            callbacks=[*training_callbacks(config, state, out_dir, sample_photos, on_progress),
                       *callbacks],
            verbose=config.verbose,
        )

    model_path = out_dir / FINAL_MODEL_NAME
    final = float32_copy(config, trainer.transform_net)
    if plan.base_weights is not None:
        # Only the fine-tuned slot changes; every other weight is the bank's own.
        final.set_weights(bank.splice_slot(plan.base_weights, final, config.train_slot))
    final.save(model_path)
    return TrainResult(
        steps=state.step,
        steps_this_run=state.step - start_step,
        seconds=state.seconds,
        final_losses=state.last_losses,
        mean_losses=state.mean_losses(),
        model_path=model_path,
        model=final,
        precision=trainer.precision,
        skipped_photos=skips.count,
        last_checkpoint=latest_checkpoint(out_dir),
        config=config,
    )


def train_servable(config: TrainConfig, model_dir, *,
                   slots: Callable[[dict], list[dict]] | None = None,
                   on_progress=None, **train_options) -> ServableVersion:
    """Train ``config`` (:func:`train`) and export the network as the next version under
    ``model_dir`` (``<serving dir>/models/<name>``, ``ml.export.export_savedmodel``):
    ``slots(record)`` describes every slot given how the run trained (``record``:
    ``ml.servable.settings_record``; default ``ml.servable.described_slots``, after the
    painting files); ``train_options`` go to :func:`train` (``dataset``, ``callbacks``).
    Raises what training and exporting raise; nothing is exported unless training ended
    well."""
    from ml.export import export_savedmodel

    result = train(config, on_progress=on_progress, **train_options)
    record = settings_record(result)
    described = (slots or (lambda rec: described_slots(config, rec)))(record)
    version, path = export_savedmodel(result.model, Path(model_dir), slots=described)
    return ServableVersion(result=result, version=version, path=path, record=record,
                           slots=described)


def training_callbacks(config: TrainConfig, state: RunState, out_dir: Path, sample_photos,
                       on_progress) -> list[keras.callbacks.Callback]:
    """The callbacks of one run, in the order they must run after each step."""
    monitor = DivergenceMonitor()
    callbacks = [
        StepLog(state),
        DivergenceStop(state, out_dir, monitor),
        AtomicCheckpoint(state, out_dir, every=config.checkpoint_every,
                         keep=config.keep_checkpoints, probe_images=sample_photos,
                         monitor=monitor, config_dict=config.as_dict()),
        SampleImages(state, out_dir, sample_photos, every=config.sample_every),
    ]
    if config.max_seconds is not None:
        callbacks.append(TimeLimit(state, config.max_seconds))
    if tensorboard_available():
        callbacks.append(GlobalStepTensorBoard(out_dir / "logs", initial_step=state.start_step,
                                               update_freq=config.log_every))
    if on_progress is not None:
        callbacks.append(ProgressHook(state, on_progress))
    return callbacks


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--export-to", metavar="MODEL_DIR", type=Path, default=None,
                        help="also export the trained network as the next version under "
                             "MODEL_DIR (e.g. serving/models/my-bank), with its slots.json")
    return parser


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    return _parse(argv)[0]


def _parse(argv: list[str] | None) -> tuple[TrainConfig, Path | None]:
    parser = build_parser()
    args = parser.parse_args(argv)
    needed = ("data_dir", "out_dir") if "paintings" in vars(args) else (
        "painting", "data_dir", "out_dir")
    missing = [spec.metadata["flag"] for spec in FLAG_FIELDS
               if spec.name in needed and spec.name not in vars(args)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return config_from_args(args), args.export_to


def main(argv: list[str] | None = None) -> None:
    from ml.servable import fine_tuned_slots

    config, export_to = _parse(argv)
    if export_to is not None and config.train_slot is not None:
        try:  # refused before training, not after
            fine_tuned_slots(config.init_weights)
        except ValueError as error:
            raise SystemExit(f"error: {error}") from error
    try:
        if export_to is None:
            result, exported = train(config), None
        else:
            exported = train_servable(config, export_to)
            result = exported.result
    except (TrainingDiverged, CannotTrain) as error:
        raise SystemExit(f"error: {error}") from error
    print(
        f"\n{result.steps} steps in {result.seconds:.0f} s ({result.precision}); final losses "
        f"{result.final_losses}; {result.skipped_photos} photos skipped; "
        f"model at {result.model_path}"
    )
    if exported is not None:
        print(f"exported version {exported.version} ({exported.num_styles} slots) to "
              f"{exported.path}")


if __name__ == "__main__":
    main()
