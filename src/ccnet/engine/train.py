"""Training: ``train(config) -> TrainResult``, single process or one process per device under ``torchrun``.

The loop reads top to bottom: processes and devices -> run directory -> datasets -> model (+ SyncBN, DDP)
-> losses, optimiser, schedule -> resume -> iterations (forward, loss, non-finite check, backward, step)
with periodic validation and checkpoints -> final validation and exported weights.

Two kinds of model run through it (the registry entry's ``task``): semantic segmentation (batches of image
tensors and label maps, per-pixel losses, mIoU validation) and instance segmentation (Mask R-CNN: batches
of image lists and target dicts, the loss is the sum of the dict the model returns, validation by COCOeval,
the best checkpoint by mask AP). Where they differ, :class:`~ccnet.engine.training_model.InstanceTask`
says how; everything else (schedule, resume, DDP, AMP, checkpoints, the log) is shared.

Reproducibility: the model is initialised from ``train.seed`` on every rank, then each rank draws from
``seed + rank``; the data order and each sample's augmentation depend on (seed, epoch, index) only (see
:mod:`ccnet.engine.loader`); checkpoints hold every generator state and the data position, so with
``train.deterministic`` a run resumed from any checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ccnet.config import Config, ConfigError, config_to_dict
from ccnet.engine.checkpoint import (
    CheckpointManager,
    capture_rng_state,
    checkpoint_meta,
    load_training_checkpoint,
    non_finite_training_state,
    restore_rng_state,
)
from ccnet.engine.dist import DistContext, convert_sync_batchnorm, init_distributed, seed_everything
from ccnet.engine.errors import NonFiniteLossError, ResumeError, TrainingError
from ccnet.engine.evaluate import evaluate, write_reports
from ccnet.engine.loader import (
    INSTANCE_DATASETS,
    ResumableSampler,
    build_datasets,
    build_instance_datasets,
    build_train_loader,
    train_transforms_for,
)
from ccnet.engine.optim import build_optimizer, build_scheduler, set_hyperparameters
from ccnet.engine.run_dir import check_resume_config, resolve_run_dir, write_run_config, writing_to
from ccnet.engine.setup import config_segmenter
from ccnet.engine.train_log import TrainingLog
from ccnet.engine.training_model import InstanceTask, ModelWithLossModules, frames_as_images
from ccnet.losses import CategoryConsistentLoss, OhemCrossEntropy, SegmentationLoss
from ccnet.metrics import SegmentationMetrics

if TYPE_CHECKING:
    from ccnet.engine.coco_eval import InstanceMetrics

__all__ = [
    "ModelWithLossModules",
    "NonFiniteLossError",
    "ResumeError",
    "TrainResult",
    "TrainingError",
    "frames_as_images",
    "train",
]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run produced. ``metrics``: the final validation (COCOeval's
    :class:`~ccnet.engine.coco_eval.InstanceMetrics` for instance models); ``best_miou``: the best validation
    score (mask AP for instance models); ``weights``: exported weights."""

    work_dir: Path
    iterations: int
    metrics: SegmentationMetrics | InstanceMetrics | None
    best_miou: float | None
    checkpoint: Path | None
    weights: Path | None
    classes: tuple[str, ...]
    model: nn.Module


# --- setup helpers ------------------------------------------------------------------------------------
def _check(config: Config, ctx: DistContext) -> None:
    tc = config.train
    if tc.batch_size % ctx.world_size:
        raise ConfigError(
            f"train.batch_size={tc.batch_size} is not divisible by the {ctx.world_size} processes"
        )
    if tc.amp == "fp16" and ctx.device.type != "cuda":
        raise ConfigError("train.amp='fp16' needs CUDA; use 'bf16' on CPU")
    if tc.max_iters < 1:
        raise ConfigError(f"train.max_iters must be >= 1, got {tc.max_iters}")
    from ccnet.models.registry import get_model_entry

    try:
        instance = get_model_entry(config.model.name).task == "instance"
    except ValueError as error:  # unknown name: close names listed
        raise ConfigError(f"model.name: {error}") from None
    if instance != (config.data.dataset in INSTANCE_DATASETS):
        kind = "an instance" if instance else "a semantic segmentation"
        raise ConfigError(
            f"model.name={config.model.name!r} is {kind} model but data.dataset={config.data.dataset!r} "
            f"{'is not' if instance else 'is'} an instance dataset ({', '.join(INSTANCE_DATASETS)})"
        )
    if instance and config.loss.ccl.enabled:
        raise ConfigError(
            "loss.ccl.enabled: the category consistent loss is for semantic segmentation models"
        )


def _non_finite_advice(last_checkpoint: Path | None) -> str:
    """The end of a non-finite message: the newest finite checkpoint and how to continue from it."""
    if last_checkpoint is None:
        return (
            "no finite checkpoint was written. Lower optim.lr, enable optim.clip_grad_norm or check the "
            "data, then start the run again"
        )
    return (
        f"the newest finite checkpoint is {last_checkpoint}. Lower optim.lr, enable optim.clip_grad_norm or "
        "check the data, then continue from it with --resume (e.g. --resume optim.lr=<lower>)"
    )


def _condensed(error: BaseException, limit: int = 300) -> str:
    """An exception message on one line, cut to ``limit`` characters (load_state_dict lists every key)."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the run -------------------------------------------------------------------------------------------
def train(
    config: Config, *, resume: bool | str | Path = False, allow_config_change: bool = False
) -> TrainResult:
    """Train (or, with ``resume``, continue training) as ``config`` says; see the module docstring.

    Args:
        config: the resolved run configuration.
        resume: ``True`` = the latest checkpoint of the run (``train.work_dir``, else the newest run under
            ``runs/<name>``, which must hold a checkpoint); a path = that checkpoint file or the latest one
            in that directory. The config must be the run's own up to the keys
            :mod:`ccnet.engine.run_dir` allows (a lower ``optim.lr``, a longer ``train.max_iters``, ...),
            which the restored optimiser and schedule then use. Nothing in the run directory is written
            before the checkpoint has been read, checked finite and loaded into the model and optimiser.
        allow_config_change: with ``resume``, let any other key differ from the run's config too (the
            resumed run is built from ``config``, so the changes take effect and are recorded).

    Raises:
        ConfigError: a setting that cannot work here (e.g. fp16 on CPU), or a resume config that differs
            from the run's in keys that cannot change.
        NonFiniteLossError: the loss or the trained state became NaN/inf (no non-finite checkpoint is
            written; the message names the newest finite one).
        ResumeError: nothing to resume, or a file that is no usable training checkpoint.
        TrainingError: ``train.work_dir`` already used by another run, or a run directory not writable.
    """
    created_group = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(config.train.device)
    try:
        with _torch_settings(config, ctx):
            return _run(config, ctx, resume, allow_config_change)
    finally:
        if created_group and ctx.distributed:
            dist.destroy_process_group()


@contextlib.contextmanager
def _torch_settings(config: Config, ctx: DistContext) -> Iterator[None]:
    """Thread count and deterministic mode for the run; the previous settings are restored afterwards."""
    tc = config.train
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if tc.num_threads or ctx.device.type == "cpu":
        torch.set_num_threads(tc.num_threads or max(1, (os.cpu_count() or 1) // ctx.local_world_size))
    if tc.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)  # a few CUDA backward kernels have none
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark = saved[3]


def _run(
    config: Config, ctx: DistContext, resume: bool | str | Path, allow_config_change: bool
) -> TrainResult:
    tc, main = config.train, ctx.is_main
    _check(config, ctx)
    work_dir, resume_from = resolve_run_dir(config, resume, ctx)
    resumed: dict[str, Any] | None = None
    applied: dict[str, tuple[Any, Any]] = {}
    if resume_from is not None:  # read and check everything before anything is written
        resumed = load_training_checkpoint(resume_from, map_location=ctx.device)
        applied = check_resume_config(config, resume_from, resumed, allow_changes=allow_config_change)
    elif main:  # a new run: its folder and config first, so that even a run that dies early is explained
        with writing_to("the run folder", work_dir):
            work_dir.mkdir(parents=True, exist_ok=True)
            write_run_config(config, work_dir)
    if main:
        log.info(
            "run directory %s (%d process%s on %s)",
            work_dir,
            ctx.world_size,
            "es" if ctx.distributed else "",
            ctx.device,
        )

    # data and model; the model is initialised identically on every rank
    from ccnet.models import create_model

    task = InstanceTask() if config.data.dataset in INSTANCE_DATASETS else None
    if task is not None:
        train_set, val_set, meta = build_instance_datasets(config.data)
    else:
        train_set, val_set = build_datasets(config.data)
        meta = train_set.meta
    model_overrides = config.model.overrides()
    if task is not None:
        model_overrides.update(task.size_overrides(config.data))
    seed_everything(tc.seed)
    model = create_model(
        config.model.name,
        num_classes=meta.num_classes,
        pretrained=config.model.pretrained,
        new_classifier=config.model.new_classifier,
        **model_overrides,
    )
    if task is None:
        train_set.transforms = train_transforms_for(config.data, meta, model.preprocess)
    if ctx.distributed and tc.sync_bn:
        model = convert_sync_batchnorm(model, ctx.device)
    model.to(ctx.device)

    # losses, optimiser, schedule
    lc = config.loss
    ccl = None
    if lc.ccl.enabled:
        if not hasattr(getattr(model, "head", None), "context"):
            raise ConfigError("loss.ccl.enabled: the model has no head.context module to take features from")
        ccl = CategoryConsistentLoss(
            model.head.conv_out.conv.in_channels,  # the context module's output channels
            meta.num_classes,
            dim=lc.ccl.dim,
            delta_v=lc.ccl.delta_v,
            delta_d=lc.ccl.delta_d,
            alpha=lc.ccl.alpha,
            beta=lc.ccl.beta,
            gamma=lc.ccl.gamma,
            ignore_index=lc.ignore_index,
        ).to(ctx.device)
    trainee = ModelWithLossModules(model, ccl)
    net: nn.Module = trainee
    if ctx.distributed:
        net = DistributedDataParallel(
            trainee, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    ohem = OhemCrossEntropy(lc.ohem.thresh, lc.ohem.min_kept, lc.ignore_index) if lc.ohem.enabled else None
    criterion = SegmentationLoss(aux_weight=lc.aux_weight, ohem=ohem, ignore_index=lc.ignore_index)
    oc = config.optim
    optimizer = build_optimizer(
        trainee.parameters(), name=oc.name, lr=oc.lr, momentum=oc.momentum, weight_decay=oc.weight_decay
    )
    scheduler = build_scheduler(optimizer, oc, tc.max_iters)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=tc.amp == "fp16")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp)

    # data order: per-rank batches, resumable at any batch
    per_rank_batch = tc.batch_size // ctx.world_size
    sampler = ResumableSampler(
        len(train_set), per_rank_batch, rank=ctx.rank, world_size=ctx.world_size, seed=tc.seed
    )
    loader = build_train_loader(
        train_set,
        sampler,
        num_workers=config.data.num_workers,
        seed=tc.seed,
        rank=ctx.rank,
        device=ctx.device,
        **({"collate_fn": task.collate} if task is not None else {}),
    )

    # resume: weights, optimiser, schedule, position, then (below) the generators
    start, epoch, batch_in_epoch, best_miou, rng_states = 0, 0, 0, None, None
    if resumed is not None:
        state = resumed
        try:
            model.load_state_dict(state["model"])
            if ccl is not None and "ccl" in state.get("extra_modules", {}):
                ccl.load_state_dict(state["extra_modules"]["ccl"])
            optimizer.load_state_dict(state["optimizer"])
            # the schedule keeps this config's values (lr, max_iters, ...) and sets the groups' lr from them
            scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise ResumeError(
                f"--resume {resume_from}: the checkpoint does not fit the model {config.model.name} and "
                f"optimiser of this config ({_condensed(err)})"
            ) from err
        set_hyperparameters(optimizer, weight_decay=oc.weight_decay, momentum=oc.momentum)
        start, epoch, batch_in_epoch = state["iteration"], state["epoch"], state["batch_in_epoch"]
        best_miou, rng_states = state.get("best_miou"), state.get("rng")
        del state, resumed  # the restored copies live in the model and optimiser now
        # validated: only now does the resumed run write into its folder
        if main:
            with writing_to("the run folder", work_dir):
                work_dir.mkdir(parents=True, exist_ok=True)
                superseded = CheckpointManager(work_dir, clean=False).set_aside_newer_than(start)
                write_run_config(config, work_dir)
            log.info("resumed from %s at iteration %d", resume_from, start)
            for key, (old, new) in applied.items():
                log.info("resume: %s changed from %r to %r (applied; config.yaml records it)", key, old, new)
            if superseded:
                log.warning(
                    "resume: %d newer checkpoint(s) of the abandoned continuation renamed to *.superseded",
                    len(superseded),
                )
    manager = CheckpointManager(work_dir, tc.keep_last, clean=main)
    seed_everything(tc.seed + ctx.rank)  # per-rank streams (dropout)
    if rng_states is not None:
        if len(rng_states) == ctx.world_size:
            restore_rng_state(rng_states[ctx.rank])
        elif main:
            log.warning(
                "checkpoint has generator states of %d processes, this run has %d: not restored",
                len(rng_states),
                ctx.world_size,
            )

    segmenter = config_segmenter(model, config, meta) if task is None else None
    file_meta = checkpoint_meta(
        model, model_overrides=model_overrides, classes=meta.classes, palette=meta.palette
    )
    progress = TrainingLog(config, start, main, work_dir)

    def validate(done: int) -> Any:
        if task is not None:
            metrics = task.validate(
                model, val_set, ctx, progress=tc.progress, num_workers=config.data.num_workers
            )
            if main:
                log.info("iteration %d: val mask AP %.4f  box AP %.4f", done, metrics.mask_ap, metrics.box_ap)
                progress.scalars("val", task.scalars(metrics), done)
            return metrics
        metrics = evaluate(
            segmenter,
            val_set,
            meta.num_classes,
            ctx=ctx,
            ignore_index=meta.ignore_index,
            num_workers=config.data.num_workers,
            progress=tc.progress,
        )
        if main:
            log.info(
                "iteration %d: val mIoU %.4f  mAcc %.4f  aAcc %.4f",
                done,
                metrics.miou,
                metrics.macc,
                metrics.aacc,
            )
            progress.scalars("val", {"mIoU": metrics.miou, "mAcc": metrics.macc, "aAcc": metrics.aacc}, done)
        return metrics

    def checkpoint_state(done: int) -> dict[str, Any]:
        rng = [capture_rng_state()]
        if ctx.distributed:
            rng = [None] * ctx.world_size
            dist.all_gather_object(rng, capture_rng_state())
        return {
            "meta": file_meta,
            "model": model.state_dict(),
            "extra_modules": {"ccl": ccl.state_dict()} if ccl is not None else {},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "iteration": done,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "best_miou": best_miou,
            "rng": rng,
            "config": config_to_dict(config),
        }

    # the loop
    sampler.set_position(epoch, batch_in_epoch)
    epoch, batch_in_epoch = sampler.epoch, sampler.start_batch
    batches = iter(loader)
    # every checkpoint this run writes is finite (checked below), and so is the one it resumed from
    metrics, last_checkpoint = None, resume_from
    trainee.train()
    for iteration in range(start, tc.max_iters):
        try:
            batch = next(batches)
        except StopIteration:  # next epoch
            epoch, batch_in_epoch = epoch + 1, 0
            sampler.set_position(epoch, 0)
            batches = iter(loader)
            batch = next(batches)
        batch_in_epoch += 1
        autocast = torch.autocast(ctx.device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        if task is not None:
            images, targets = task.to_device(batch, ctx.device)
            with autocast:
                output, _ = net(images, targets)
            losses = task.losses(output)
        else:
            images = batch["image"].to(ctx.device, non_blocking=True)
            target = batch["mask"].to(ctx.device, non_blocking=True)
            with autocast:
                output, embeddings = net(images)
            out, aux, target = frames_as_images(output.out, output.aux, target)
            losses = criterion(out, aux, target)
        if ccl is not None:
            ccl_total, terms = ccl.loss_from_embeddings(embeddings, target)
            losses.update(
                loss=losses["loss"] + ccl_total,
                ccl_var=terms.variance,
                ccl_dis=terms.distance,
                ccl_reg=terms.regularisation,
            )
        loss = losses["loss"]

        # every rank sees the same (mean) loss, so all stop together on a non-finite one
        reported = torch.stack([v.detach().float() for v in losses.values()])
        if ctx.distributed:
            dist.all_reduce(reported)
            reported /= ctx.world_size
        values = dict(zip(losses, reported.tolist(), strict=True))
        if not math.isfinite(values["loss"]):
            raise NonFiniteLossError(
                f"non-finite loss ({values['loss']}) at iteration {iteration + 1}; training stopped, "
                + _non_finite_advice(last_checkpoint)
            )

        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if oc.clip_grad_norm:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainee.parameters(), oc.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        done = iteration + 1

        progress.step(done, values, lr)

        # validation and checkpoints
        final = done == tc.max_iters
        is_best = False
        if final or (tc.val_interval and done % tc.val_interval == 0):
            metrics = validate(done)
            trainee.train()
            score = task.score(metrics) if task is not None else metrics.miou
            if best_miou is None or score > best_miou:
                best_miou, is_best = score, True
        keep = final or bool(tc.checkpoint_interval and done % tc.checkpoint_interval == 0)
        if keep or is_best:
            state = checkpoint_state(done)
            # a finite loss does not make finite weights (an overflowing step): never save such a state
            non_finite = non_finite_training_state(state)
            if non_finite is not None:
                raise NonFiniteLossError(
                    f"non-finite values in the trained state after iteration {done} ({non_finite}); it is "
                    "not written as a checkpoint, training stopped, " + _non_finite_advice(last_checkpoint)
                )
            if main:
                with writing_to("a checkpoint into", work_dir):
                    path = manager.save(state, done, keep=keep, best=is_best)
                last_checkpoint = path if keep else last_checkpoint
            ctx.barrier()
    progress.close()

    if metrics is None:  # resumed a finished run
        metrics = validate(tc.max_iters)
    weights = None
    if main:
        from ccnet.models import save_weights

        with writing_to("the weights and reports into", work_dir):
            weights = save_weights(work_dir / "model.safetensors", model.state_dict(), file_meta)
            if task is not None:
                task.write_reports(metrics, work_dir, title=f"{config.name}: validation")
            else:
                write_reports(
                    metrics,
                    meta.classes,
                    work_dir,
                    extra={"title": f"{config.name}: validation", "iteration": tc.max_iters},
                )
    return TrainResult(
        work_dir, tc.max_iters, metrics, best_miou, manager.latest(), weights, meta.classes, model
    )
