"""Pure functions of the ensemble: log f, scores, samples; chunked evaluation."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array

from ._flows import FlowConfig, Member, flow_log_prob, flow_sample, prng_key
from ._transforms import Preprocessing

__all__ = [
    "member_log_prob",
    "members_log_prob",
    "members_log_prob_x",
    "members_score",
    "members_score_x",
    "evaluate",
    "sample",
    "sample_velocities",
]

_M = eqx.if_array(0)  # map the members axis of array leaves only

#: Points per sub-batch: every matmul of an evaluation is batched over (member,
#: sub-batch) pairs of this many points (small working sets that stay in cache).
SUB = 512
#: Sub-batches per member and chunk for a single member (fewer for larger ensembles).
SPLIT = 4
#: Points per compiled block of chunks for large inputs.
BLOCK_POINTS = 32768


def _chunk_size(k: int) -> int:
    return SUB * max(1, SPLIT // k)


def _across(member_fn: Callable, members: Member, prep: Preprocessing, config: FlowConfig, *arrays: Array):
    """Apply a per-member batched function to every member; output leaves (K, B, ...).

    The B points are split into sub-batches of :data:`SUB` points, each paired
    with a copy of its member's parameters, so that the network's matmuls are
    batched over (member, sub-batch) pairs (measured faster than one large batch).
    """
    k = jax.tree.leaves(eqx.filter(members, eqx.is_array))[0].shape[0]
    b = arrays[0].shape[0]
    p = b // SUB if b % SUB == 0 else 1
    if p > 1:
        members = jax.tree.map(lambda a: jnp.repeat(a, p, axis=0) if eqx.is_array(a) else a, members)
        arrays = tuple(jnp.tile(a.reshape(p, b // p, *a.shape[1:]), (k,) + (1,) * a.ndim) for a in arrays)
        axes = (_M, None, None) + (0,) * len(arrays)
    else:
        axes = (_M, None, None) + (None,) * len(arrays)
    out = eqx.filter_vmap(member_fn, in_axes=axes)(members, prep, config, *arrays)
    return jax.tree.map(lambda o: o.reshape(k, b, *o.shape[2:]), out)


def member_log_prob(member: Member, prep: Preprocessing, config: FlowConfig, x: Array, v: Array) -> Array:
    """log f(x, v) of one member, shape (B,), in log [kpc⁻³ (km/s)⁻³]; x, v (B, 3)."""
    u, ldx = prep.position_to_latent(x)
    w, ldv = prep.velocity_to_latent(v, x)
    return (
        flow_log_prob(member.flow_x, config, u)
        + ldx
        + flow_log_prob(member.flow_v, config, w, u)
        + ldv
    )


def member_log_prob_x(member: Member, prep: Preprocessing, config: FlowConfig, x: Array) -> Array:
    """log n(x) of one member (normalised to 1), shape (B,), in log kpc⁻³."""
    u, ldx = prep.position_to_latent(x)
    return flow_log_prob(member.flow_x, config, u) + ldx


def members_log_prob(members: Member, prep: Preprocessing, config: FlowConfig, x: Array, v: Array) -> Array:
    """Per-member log f, shape (K, B)."""
    return _across(member_log_prob, members, prep, config, x, v)


def members_log_prob_x(members: Member, prep: Preprocessing, config: FlowConfig, x: Array) -> Array:
    """Per-member log n(x), shape (K, B)."""
    return _across(member_log_prob_x, members, prep, config, x)


def _member_score(member: Member, prep: Preprocessing, config: FlowConfig, x: Array, v: Array):
    # points are independent, so the gradient of the batch sum is the per-point gradient:
    # one batched forward and one reverse pass for the whole chunk
    def total(x, v):
        return jnp.sum(member_log_prob(member, prep, config, x, v))

    return jax.grad(total, argnums=(0, 1))(x, v)


def _member_score_x(member: Member, prep: Preprocessing, config: FlowConfig, x: Array):
    return jax.grad(lambda x: jnp.sum(member_log_prob_x(member, prep, config, x)))(x)


def members_score(members: Member, prep: Preprocessing, config: FlowConfig, x: Array, v: Array):
    """Per-member (∂log f/∂x [kpc⁻¹], ∂log f/∂v [(km/s)⁻¹]), each (K, B, 3)."""
    return _across(_member_score, members, prep, config, x, v)


def members_score_x(members: Member, prep: Preprocessing, config: FlowConfig, x: Array):
    """Per-member ∇ log n(x) [kpc⁻¹], shape (K, B, 3)."""
    return _across(_member_score_x, members, prep, config, x)


@eqx.filter_jit
def _chunk(fn: Callable, members: Member, prep: Preprocessing, config: FlowConfig, *arrays: Array):
    return fn(members, prep, config, *arrays)


@eqx.filter_jit
def _block(fn: Callable, members: Member, prep: Preprocessing, config: FlowConfig, *arrays: Array):
    # arrays: (n_chunks, chunk, ...); one program runs the chunks in sequence (lax.map)
    out = jax.lax.map(lambda a: fn(members, prep, config, *a), arrays)

    def merge(o):  # (n_chunks, K, chunk, ...) → (K, n_chunks·chunk, ...)
        o = jnp.moveaxis(o, 0, 1)
        return o.reshape(o.shape[0], o.shape[1] * o.shape[2], *o.shape[3:])

    return jax.tree.map(merge, out)


def _is_concrete(a) -> bool:
    return not isinstance(a, jax.core.Tracer)


def evaluate(fn: Callable, members: Member, prep: Preprocessing, config: FlowConfig, *arrays: Array):
    """Evaluate a per-member batched ``fn`` on (N, 3) arrays in jitted chunks.

    Two compiled programs per ``fn`` at most: blocks of :data:`BLOCK_POINTS`
    points (one ``lax.map`` over chunks), and single chunks for the rest (the
    last one padded). With concrete inputs the slicing, padding and joining
    happen in numpy (no per-shape compilation) and numpy arrays are returned;
    with traced inputs (inside a user's ``jit``) the same steps are traced.

    Returns:
        ``fn``'s output pytree with leaves of shape (K, N, ...).
    """
    n = arrays[0].shape[0]
    if n == 0:
        raise ValueError("no points to evaluate (N = 0); pass arrays of shape (N, 3) with N ≥ 1")
    chunk = _chunk_size(_size(members))
    n_block = BLOCK_POINTS // chunk
    concrete = all(_is_concrete(a) for a in arrays)
    xp = np if concrete else jnp
    if concrete:
        arrays = tuple(np.asarray(a) for a in arrays)
    outs = []
    start = 0
    big = n_block * chunk
    while n - start >= big:
        blocks = [a[start : start + big].reshape(n_block, chunk, *a.shape[1:]) for a in arrays]
        outs.append(_block(fn, members, prep, config, *blocks))
        start += big
    while start < n:
        stop = min(start + chunk, n)
        pad = chunk - (stop - start)
        blocks = []
        for a in arrays:
            a = a[start:stop]
            if pad:
                a = xp.concatenate([a, xp.broadcast_to(a[:1], (pad, *a.shape[1:]))])
            blocks.append(a)
        outs.append(_chunk(fn, members, prep, config, *blocks))
        start = stop
    if concrete:
        outs = [jax.tree.map(np.asarray, o) for o in outs]
    out = outs[0] if len(outs) == 1 else jax.tree.map(lambda *o: xp.concatenate(o, axis=1), *outs)
    return jax.tree.map(lambda o: o[:, :n], out)


def _pick(members: Member, member: Array) -> Member:
    """All K slots hold member ``member`` if it is ≥ 0, else the ensemble is unchanged.

    The member index is traced, so one compiled sampler serves the mixture and
    every single member.
    """

    def leaf(a):
        if not eqx.is_array(a):
            return a
        one = jnp.broadcast_to(jax.lax.dynamic_index_in_dim(a, jnp.maximum(member, 0), keepdims=True), a.shape)
        return jnp.where(member >= 0, one, a)

    return jax.tree.map(leaf, members)


def _size(members: Member) -> int:
    return jax.tree.leaves(eqx.filter(members, eqx.is_array))[0].shape[0]


@eqx.filter_jit
def sample(members: Member, prep: Preprocessing, config: FlowConfig, seed: Array, member: Array, n: int):
    """n draws (x [kpc], v [km/s]), each (n, 3), from member ``member`` (≥ 0) or the mixture (−1).

    The mixture is stratified: ⌈n/K⌉ draws from every member, shuffled, first n kept.
    """
    members = _pick(members, member)
    k = _size(members)
    n_per = -(-n // k)
    key_s, key_p = jr.split(prng_key(seed))

    def one(member, key):
        kx, kv = jr.split(key)
        u = flow_sample(member.flow_x, config, kx, n_per)
        w = flow_sample(member.flow_v, config, kv, n_per, u)
        x = prep.latent_to_position(u)
        return x, prep.latent_to_velocity(w, x)

    x, v = eqx.filter_vmap(one)(members, jr.split(key_s, k))
    perm = jr.permutation(key_p, k * n_per)[:n]
    return x.reshape(-1, 3)[perm], v.reshape(-1, 3)[perm]


@eqx.filter_jit
def sample_velocities(
    members: Member, prep: Preprocessing, config: FlowConfig, seed: Array, member: Array, x: Array, n: int
):
    """n velocity draws [km/s] from p(v|x) at each of M positions: (M, n, 3).

    From member ``member`` (≥ 0) or the stratified mixture of all members (−1).
    """
    members = _pick(members, member)
    k = _size(members)
    n_per = -(-n // k)
    m = x.shape[0]
    key_s, key_p = jr.split(prng_key(seed))
    u, _ = prep.position_to_latent(x)
    cond = jnp.repeat(u, n_per, axis=0)  # (M·n_per, 3), position-major

    def one(member, key):
        xs = jnp.repeat(x, n_per, axis=0)
        return prep.latent_to_velocity(flow_sample(member.flow_v, config, key, m * n_per, cond), xs)

    v = eqx.filter_vmap(one)(members, jr.split(key_s, k)).reshape(k, m, n_per, 3)
    v = jnp.moveaxis(v, 0, 1).reshape(m, k * n_per, 3)
    # shuffle whole draws (rows), with a permutation of its own at each position; permuting
    # with independent=True would shuffle each velocity component on its own and break the
    # joint distribution into the product of its marginals
    order = jax.vmap(lambda key: jr.permutation(key, k * n_per))(jr.split(key_p, m))
    v = jnp.take_along_axis(v, order[:, :, None], axis=1)
    return v[:, :n]
