"""Training all K members in one vmapped program: a whole epoch is one jitted call.

Every epoch: each member shuffles its (optionally bootstrapped) training indices
with its own key, then ``lax.scan`` runs the mini-batch steps, each step updating all
K members at once (``filter_vmap`` over the stacked parameters). The two flows of a
member have their own Adam state and their own gradient clipping. After the epoch
the validation losses of all members are computed in one call; each (member, flow)
keeps its best-validation parameters, and training stops once every one of them has
gone ``patience`` epochs without improving (early stopping), or at ``max_epochs``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import pathlib
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array

from ._flows import FlowConfig, Member, build_ensemble, flow_log_prob, prng_key
from ._io import CheckpointMismatchError, PSDFileError, read_header, read_leaves, write_bundle

__all__ = ["TrainConfig", "train_ensemble", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "bayesdyn.psd.checkpoint"
_VAL_CHUNK = 4096
_A = eqx.if_array(0)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (JSON-serialisable); see :func:`bayesdyn.psd.fit_psd`."""

    batch_size: int = 512
    max_epochs: int = 30
    patience: int = 10
    val_fraction: float = 0.1
    learning_rate: float = 1e-2
    final_learning_rate: float = 1e-5
    clip_norm: float = 1.0
    bootstrap: bool = False
    #: members per bootstrap resample, each with its own seed (1: every member its own resample)
    seeds_per_resample: int = 1

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs", "patience", "seeds_per_resample"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
            object.__setattr__(self, name, int(value))  # numpy integers as int (JSON, the checkpoint's key)
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction={self.val_fraction!r} must be in (0, 1), e.g. 0.1")
        for name in ("learning_rate", "final_learning_rate", "clip_norm"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name}={value!r} must be a positive number")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["seeds_per_resample"] == 1:  # the default is left out: checkpoints and files of earlier versions match
            del d["seeds_per_resample"]
        return d


class _State(eqx.Module):
    members: Member
    opt_x: Any
    opt_v: Any
    best: Member
    best_val: Array  # (K, 2): validation NLL of (n, p(v|x)) in the flows' variables
    bad: Array  # (K, 2): epochs since the last improvement


@functools.lru_cache(maxsize=16)
def _optimizer(clip_norm: float) -> optax.GradientTransformation:
    # Adam's direction with per-flow clipping; the learning rate is applied in the
    # step from traced values (so other rates or epoch counts reuse the compiled
    # epoch), and the object is cached for the same reason
    return optax.chain(optax.clip_by_global_norm(clip_norm), optax.scale_by_adam())


def _learning_rate(sched: Array, step: Array) -> Array:
    """Cosine decay from sched[0] to sched[1] over sched[2] steps."""
    frac = jnp.clip(step / sched[2], 0.0, 1.0)
    return sched[1] + (sched[0] - sched[1]) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))


def _params(flow):
    return eqx.filter(flow, eqx.is_inexact_array)


@eqx.filter_jit
def _init_state(members: Member, opt: optax.GradientTransformation) -> _State:
    k = jax.tree.leaves(eqx.filter(members, eqx.is_array))[0].shape[0]
    opt_x = eqx.filter_vmap(lambda m: opt.init(_params(m.flow_x)))(members)
    opt_v = eqx.filter_vmap(lambda m: opt.init(_params(m.flow_v)))(members)
    return _State(
        members=members,
        opt_x=opt_x,
        opt_v=opt_v,
        best=members,
        best_val=jnp.full((k, 2), jnp.inf, jnp.float32),
        bad=jnp.zeros((k, 2), jnp.int32),
    )


def _flow_step(flow, opt_state, opt, lr, loss_fn):
    loss, grads = eqx.filter_value_and_grad(loss_fn)(flow)
    updates, new_opt_state = opt.update(grads, opt_state, _params(flow))
    updates = jax.tree.map(lambda g: -lr * g, updates)
    new_flow = eqx.apply_updates(flow, updates)
    # a batch whose loss or gradient is not finite (one star's log-density overflowed) is skipped: the flow
    # and Adam's moments stay as they were, instead of turning NaN for the rest of the training. With finite
    # values the update is the same; the compiled program differs, so fits differ from those of bayesdyn
    # before this guard at float32 rounding (4e-6 in log f after 4 epochs of a small fit, measured)
    finite = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    keep = lambda new, old: jnp.where(finite, new, old) if eqx.is_array(new) else new  # noqa: E731
    new_flow = jax.tree.map(keep, new_flow, flow)
    new_opt_state = jax.tree.map(keep, new_opt_state, opt_state)
    return new_flow, new_opt_state, loss


def _saved_progress(header: dict, ensemble: int, max_epochs: int, ckpt: pathlib.Path) -> tuple[int, dict]:
    """The epoch count and loss history of a verified checkpoint header, checked (an edited header whose checksum was
    recomputed gave a bare ValueError for an epoch "three", or resumed from epoch 3 for "3")."""
    epoch, history = header.get("epoch"), header.get("history")
    problem = None
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= max_epochs:
        problem = f"its epoch {epoch!r} is not a whole number in [0, max_epochs = {max_epochs}]"
    elif not isinstance(history, dict) or set(history) != {"train", "val", "seconds", "cpu_seconds"}:
        problem = "its history is not the record of train, val, seconds and cpu_seconds"
    else:
        shapes = {"train": (epoch, ensemble, 2), "val": (epoch, ensemble, 2), "seconds": (epoch,),
                  "cpu_seconds": (epoch,)}
        for key, shape in shapes.items():
            try:
                arr = np.asarray(history[key], np.float64) if isinstance(history[key], list) else None
            except (TypeError, ValueError):  # ragged or not numbers
                arr = None
            if arr is None or (arr.shape != shape and not (epoch == 0 and arr.size == 0)):
                problem = f"its history's {key!r} is not {epoch} epoch(s) of numbers of shape {shape[1:] or '()'}"
                break
    if problem:
        raise PSDFileError(f"{ckpt / 'checkpoint.json'}: {problem}. This is a training checkpoint: delete {ckpt} "
                           "(or pass another checkpoint_dir) to train afresh")
    return epoch, history


@eqx.filter_jit
def _run_epoch(state: _State, seed: Array, epoch: Array, train_idx: Array, u: Array, w: Array, sched: Array,
               first_step: Array, *, config: FlowConfig, opt: optax.GradientTransformation, batch_size: int):
    k, n_train = train_idx.shape
    n_batches = n_train // batch_size
    key = jr.fold_in(prng_key(seed), epoch)

    def order(key, idx):
        return jr.permutation(key, idx)[: n_batches * batch_size].reshape(n_batches, batch_size)

    batches = jnp.swapaxes(jax.vmap(order)(jr.split(key, k), train_idx), 0, 1)  # (nb, K, B)

    def member_step(member, opt_x, opt_v, b, lr):
        ub, wb = u[b], w[b]
        fx, opt_x, lx = _flow_step(member.flow_x, opt_x, opt, lr, lambda f: -jnp.mean(flow_log_prob(f, config, ub)))
        fv, opt_v, lv = _flow_step(
            member.flow_v, opt_v, opt, lr, lambda f: -jnp.mean(flow_log_prob(f, config, wb, ub))
        )
        return Member(fx, fv), opt_x, opt_v, jnp.stack([lx, lv])

    dynamic, static = eqx.partition((state.members, state.opt_x, state.opt_v), eqx.is_array)

    def step(carry, xs):
        b, i = xs
        members, opt_x, opt_v = eqx.combine(carry, static)
        lr = _learning_rate(sched, (first_step + i).astype(sched.dtype))
        out = eqx.filter_vmap(member_step, in_axes=(_A, _A, _A, _A, None))(members, opt_x, opt_v, b, lr)
        return eqx.filter(out[:3], eqx.is_array), out[3]

    carry, losses = jax.lax.scan(step, dynamic, (batches, jnp.arange(n_batches)))
    members, opt_x, opt_v = eqx.combine(carry, static)
    return dataclasses.replace(state, members=members, opt_x=opt_x, opt_v=opt_v), jnp.mean(losses, axis=0)


@eqx.filter_jit
def _val_losses(members: Member, u: Array, w: Array, weight: Array, *, config: FlowConfig) -> Array:
    """Weighted mean NLL of (n, p(v|x)) per member, shape (K, 2); inputs (n_chunks, C, ...)."""

    def member(m):
        def chunk(args):
            uc, wc, wt = args
            lx = flow_log_prob(m.flow_x, config, uc)
            lv = flow_log_prob(m.flow_v, config, wc, uc)
            return jnp.stack([-jnp.sum(wt * lx), -jnp.sum(wt * lv)])

        return jnp.sum(jax.lax.map(chunk, (u, w, weight)), axis=0) / jnp.sum(weight)

    return eqx.filter_vmap(member)(members)


@eqx.filter_jit
def _keep_best(state: _State, val: Array) -> _State:
    improved = val < state.best_val  # (K, 2); NaN never improves

    def pick(mask, new, old):
        def leaf(a, b):
            if not eqx.is_array(a):
                return a
            return jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

        return jax.tree.map(leaf, new, old)

    best = Member(
        pick(improved[:, 0], state.members.flow_x, state.best.flow_x),
        pick(improved[:, 1], state.members.flow_v, state.best.flow_v),
    )
    return dataclasses.replace(
        state,
        best=best,
        best_val=jnp.where(improved, val, state.best_val),
        bad=jnp.where(improved, 0, state.bad + 1),
    )


def _chunks(a: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    n = a.shape[0]
    n_chunks = max(1, math.ceil(n / size))
    pad = n_chunks * size - n
    if pad:
        a = np.concatenate([a, np.repeat(a[:1], pad, axis=0)])
    return a.reshape(n_chunks, size, *a.shape[1:]), pad


def _member_indices(rng: np.random.Generator, tr_idx: np.ndarray, ensemble: int, train: TrainConfig) -> np.ndarray:
    """Each member's training stars, (K, n_train) int32: the training set, or bootstrap resamples of it.

    With bootstrap, J = K / L resamples are drawn and member j trains on resample
    j // L: the L members of a group share their stars and differ by seed
    (initialisation and batch order) only.
    """
    n_train = len(tr_idx)
    if not train.bootstrap:
        return np.ascontiguousarray(np.broadcast_to(tr_idx, (ensemble, n_train)), np.int32)
    n_groups = ensemble // train.seeds_per_resample
    resamples = tr_idx[rng.integers(0, n_train, size=(n_groups, n_train))]
    return np.ascontiguousarray(np.repeat(resamples, train.seeds_per_resample, axis=0), np.int32)


def data_sha256(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def train_ensemble(
    u: np.ndarray,
    w: np.ndarray,
    *,
    config: FlowConfig,
    train: TrainConfig,
    ensemble: int,
    seed: int,
    checkpoint_dir: str | pathlib.Path | None,
    progress: bool,
    fingerprint: dict[str, Any],
) -> tuple[Member, dict[str, Any], np.ndarray]:
    """Train K members on the flows' variables (u, w), each (N, 3) float32.

    Returns:
        The best-validation members (stacked), a JSON-serialisable info dict, and
        the indices of the validation stars.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**31:
        raise ValueError(f"seed={seed!r} must be an integer in [0, 2**31) (the flows' JAX keys take 31 bits: larger "
                         "seeds would share their keys with smaller ones but not their data split)")
    n = u.shape[0]
    n_val = max(1, int(round(train.val_fraction * n)))
    n_train = n - n_val
    if n_train < train.batch_size:
        raise ValueError(
            f"only {n_train} training stars after holding out {n_val} for validation, fewer "
            f"than batch_size={train.batch_size}; lower batch_size (e.g. {max(1, n_train // 4)}) "
            "or val_fraction, or use more stars"
        )
    # data splits on the host (numpy, seeded); flow initialisation and shuffling in JAX
    rng = np.random.default_rng([int(seed) % 2**32, 0x505344])
    perm = rng.permutation(n)
    val_idx, tr_idx = perm[:n_val], np.sort(perm[n_val:])
    train_idx = jnp.asarray(_member_indices(rng, tr_idx, ensemble, train))
    k_init = prng_key(2 * (int(seed) % 2**31))
    seed_train = jnp.asarray(np.uint32((2 * (int(seed) % 2**31) + 1) % 2**32))

    u_dev, w_dev = jnp.asarray(u), jnp.asarray(w)
    uv, pad = _chunks(u[val_idx], _VAL_CHUNK)
    wv, _ = _chunks(w[val_idx], _VAL_CHUNK)
    weight = np.ones(uv.shape[:2], np.float32)
    if pad:
        weight.reshape(-1)[-pad:] = 0.0
    uv, wv, weight = jnp.asarray(uv), jnp.asarray(wv), jnp.asarray(weight)

    n_batches = n_train // train.batch_size
    opt = _optimizer(train.clip_norm)
    sched = jnp.asarray([train.learning_rate, train.final_learning_rate, n_batches * train.max_epochs], jnp.float32)
    members = build_ensemble(k_init, config, ensemble)
    state = _init_state(members, opt)

    header_base = {
        "format": CHECKPOINT_FORMAT,
        "flow": config.to_dict(),
        "training": train.to_dict(),
        "ensemble": ensemble,
        "seed": seed,
        "fingerprint": fingerprint,
    }
    history: dict[str, list] = {"train": [], "val": [], "seconds": [], "cpu_seconds": []}
    start_epoch = 0
    ckpt = pathlib.Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and (ckpt / "checkpoint.json").exists():
        try:
            header = read_header(ckpt, "checkpoint", CHECKPOINT_FORMAT)
        except PSDFileError as err:  # a checkpoint cannot be "saved again": say how to get past it
            raise PSDFileError(f"{err}. This is a training checkpoint: delete {ckpt} (or pass another "
                               "checkpoint_dir) to train afresh") from None
        for field in ("flow", "training", "ensemble", "seed", "fingerprint"):
            if header.get(field) != header_base[field]:
                raise CheckpointMismatchError(
                    f"the checkpoint in {str(ckpt)!r} was written with a different {field!r} "
                    f"({header.get(field)!r} vs now {header_base[field]!r}); pass another "
                    "checkpoint_dir or delete that checkpoint to start afresh"
                )
        try:
            state = read_leaves(ckpt, header, state)
        except PSDFileError as err:
            raise PSDFileError(f"{err}. This is a training checkpoint: delete {ckpt} (or pass another "
                               "checkpoint_dir) to train afresh") from None
        start_epoch, history = _saved_progress(header, ensemble, train.max_epochs, ckpt)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=train.max_epochs,
        initial=start_epoch,
        desc=f"fit_psd (K={ensemble})",
        disable=not progress,
        unit="epoch",
    )
    stopped = bool(start_epoch > 0 and np.all(np.asarray(state.bad) >= train.patience))
    epoch = start_epoch
    t_total = 0.0
    try:
        while epoch < train.max_epochs and not stopped:
            t0, c0 = time.perf_counter(), time.process_time()
            state, train_loss = _run_epoch(
                state,
                seed_train,
                jnp.asarray(epoch, jnp.int32),
                train_idx,
                u_dev,
                w_dev,
                sched,
                jnp.asarray(epoch * n_batches, jnp.int32),
                config=config,
                opt=opt,
                batch_size=train.batch_size,
            )
            val = _val_losses(state.members, uv, wv, weight, config=config)
            state = _keep_best(state, val)
            val_np = np.asarray(val, np.float64)
            train_np = np.asarray(train_loss, np.float64)
            epoch += 1
            dt = time.perf_counter() - t0
            t_total += dt
            history["train"].append(train_np.tolist())
            history["val"].append(val_np.tolist())
            history["seconds"].append(dt)
            history["cpu_seconds"].append(time.process_time() - c0)
            stopped = bool(np.all(np.asarray(state.bad) >= train.patience))
            if ckpt is not None:
                write_bundle(ckpt, "checkpoint", {**header_base, "epoch": epoch, "history": history}, state,
                             versioned=True)
            bar.update(1)
            bar.set_postfix(
                train=f"{train_np.sum(axis=1).mean():.4f}",
                val=f"{val_np.sum(axis=1).mean():.4f}",
                best=f"{np.asarray(state.best_val, np.float64).sum(axis=1).mean():.4f}",
            )
    finally:
        bar.close()

    best_val = np.asarray(state.best_val, np.float64)
    if not np.all(np.isfinite(best_val)):
        bad = np.argwhere(~np.isfinite(best_val)).tolist()
        raise FloatingPointError(
            f"training diverged: (member, flow) pairs {bad} never reached a finite validation loss; "
            "lower learning_rate or clip_norm, or check the catalog for extreme outliers"
        )
    hist_val = np.asarray(history["val"], np.float64)  # (epochs, K, 2)
    # the same loss for a standard normal on the same variables: an untrained identity flow; training that ends
    # well above it diverged without overflowing (learning_rate 30 reached 1e24 nats, finite)
    gauss = [float(np.mean(0.5 * np.sum(np.asarray(a[val_idx], np.float64) ** 2, axis=1)) + 1.5 * math.log(2 * math.pi))
             for a in (u, w)]
    info = {
        "epochs": epoch,
        "stopped_early": stopped and epoch < train.max_epochs,
        "best_epoch": (np.argmin(np.where(np.isfinite(hist_val), hist_val, np.inf), axis=0) + 1).tolist(),
        "val_loss_latent": best_val.tolist(),
        "val_loss_gaussian": gauss,
        "n_train": int(n_train),
        "n_val": int(n_val),
        "val_indices_sha256": data_sha256(np.sort(val_idx)),
        "seconds": float(np.sum(history["seconds"])),
        "seconds_per_epoch": float(np.median(history["seconds"])) if history["seconds"] else float("nan"),
        "history": history,
    }
    return state.best, info, val_idx
