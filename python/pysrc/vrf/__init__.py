"""Personalised reward models by Variational Reward Factorization, from Python.

>>> import vrf
>>> model = vrf.Model("models/demo")
>>> alice = model.user([("How do I boil an egg?", "Simmer it 8 minutes.", "Eggs come from hens.")])
>>> model.score(alice, "How do I boil an egg?", ["Simmer 8 minutes.", "Eggs are nice."])
array([...], dtype=float32)

``reward_fn`` wraps a model as a reward function of the shape TRL's trainers take.

A model fitted on external feature vectors (``model.input == {"kind": "features", "dim": D}``)
takes vectors (lists of floats or numpy arrays, ``[N, D]`` for a batch) wherever a text model
takes texts: ``model.score(user, X)``, ``model.user([(chosen, rejected), ...])``, ...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable, Dict, Hashable, List, Sequence, Union

import numpy as np

from vrf._vrf import (
    BackendError,
    InputError,
    Model,
    ModelError,
    Posterior,
    State,
    UnknownUserError,
    VrfError,
    __version__,
)

__all__ = [
    "BackendError",
    "InputError",
    "Model",
    "ModelError",
    "Posterior",
    "State",
    "UnknownUserError",
    "VrfError",
    "reward_fn",
    "__version__",
]

#: What identifies a sample's user: a seen user's id, a posterior, or reference triplets.
UserSpec = Union[str, Posterior, Sequence[Any]]


def _text(x: Any, role: str, where: str) -> str:
    """A plain string, or the content of a conversational sample (TRL's list of messages):
    the last message of ``role`` (prompts: ``user``; completions: ``assistant``). A vector (a
    numpy array, a list of numbers) is a ``ValueError`` naming ``where``: a text model takes
    texts."""
    if isinstance(x, str):
        return x
    if isinstance(x, np.ndarray) or (
        isinstance(x, (list, tuple)) and x and isinstance(x[0], (int, float, np.number)) and not isinstance(x[0], bool)
    ):
        raise InputError(f"{where}: this model takes texts, not feature vectors")
    if isinstance(x, (list, tuple)) and x and all(isinstance(m, dict) for m in x):
        for m in reversed(x):
            if m.get("role") == role and isinstance(m.get("content"), str):
                return m["content"]
        last = x[-1].get("content")
        if isinstance(last, str):
            return last
    raise InputError(f"expected a string or a list of {{'role', 'content'}} messages, got {type(x).__name__}")


def _check_user(spec: Any, where: str, accepted: str, features: bool = False) -> None:
    """A user spec is a str (an id), a ``Posterior`` or reference triplets (a list of dicts or
    triplets; a features model's also one dict of two batches); anything else (an ``int`` id
    from a dataset column, ``None``, a single dict) is a ``TypeError`` naming where it came from
    and the type found."""
    if isinstance(spec, (str, Posterior)):
        return
    if features and isinstance(spec, Mapping):
        return
    if isinstance(spec, Iterable) and not isinstance(spec, (bytes, bytearray, Mapping)):
        return
    raise TypeError(f"{where} must be a str (a user id){accepted}, got {type(spec).__name__}")


def _vectors(completions: Any, dim: int) -> Any:
    """A features model's completions: a ``[N, D]`` array or a sequence of vectors; texts are a
    ``ValueError`` naming the completion."""
    if isinstance(completions, str):
        raise InputError(f"completions: this model takes feature vectors of dimension {dim}, not texts")
    if not isinstance(completions, np.ndarray):
        for i, c in enumerate(completions):
            if isinstance(c, (str, list)) and (isinstance(c, str) or (c and isinstance(c[0], dict))):
                raise InputError(f"completions[{i}]: this model takes feature vectors of dimension {dim}, not texts")
    return completions


def _user_key(spec: Any) -> Hashable:
    """What identifies a user spec within one call: an id or references by value, a posterior
    by identity."""
    if isinstance(spec, str):
        return ("id", spec)
    if isinstance(spec, Posterior):
        return ("posterior", id(spec))
    if isinstance(spec, Mapping):
        # A features model's references as one dict of two [N, D] batches.
        return ("refs", tuple((k, np.asarray(spec[k], dtype=np.float64).tobytes()) for k in ("chosen", "rejected") if k in spec))
    try:
        if any(isinstance(r, dict) and "prompt" not in r for r in spec) or any(
            not isinstance(r, dict) and len(r) == 2 for r in spec
        ):
            # Reference pairs of vectors (a features model), by value.
            return ("refs", tuple(
                tuple(np.asarray(x, dtype=np.float64).tobytes() for x in ((r["chosen"], r["rejected"]) if isinstance(r, dict) else r))
                for r in spec
            ))
        return ("refs", tuple(
            (r["prompt"], r["chosen"], r["rejected"]) if isinstance(r, dict) else tuple(r) for r in spec
        ))
    except (KeyError, TypeError) as e:
        raise InputError(f"a user must be an id, a Posterior or reference triplets: {e}") from None


def reward_fn(
    model: Model,
    user_of: Union[str, Callable[[int, Dict[str, Any]], UserSpec]],
) -> Callable[..., List[float]]:
    """A reward function ``f(prompts, completions, **kwargs) -> list[float]`` for TRL
    (``GRPOTrainer(reward_funcs=[...])``) and similar loops.

    ``user_of`` says whose reward each sample gets: the name of a dataset column holding user
    ids (TRL passes the batch's columns as keyword arguments), or a callable
    ``user_of(i, row) -> user`` where ``row`` holds sample ``i``'s columns and ``user`` is a seen
    user's id (a ``str``: an ``int`` id is a ``TypeError`` naming the sample), a ``Posterior``,
    or that user's reference triplets. Users are checked first; then all completions go through
    the backbone in one batched call (the GIL released); each user is resolved once per call.
    Conversational samples are reduced to the last user message and the last assistant
    message; texts longer than the model's context are truncated from the left, as in training.

    For a model fitted on external feature vectors, ``completions`` are the completions'
    vectors (``[N, D]`` array or a list of vectors), ``prompts`` are ignored (``None`` or one
    per completion), and reference specs are pairs of vectors (as ``Model.user`` takes them).
    """
    features = model.input.get("kind") == "features"

    def reward(prompts: Any, completions: Any, **kwargs: Any) -> List[float]:
        if features:
            completions = _vectors(completions, model.input["dim"])
        n = len(completions)
        if features and prompts is None:
            prompts = [None] * n
        if len(prompts) != n:
            raise InputError(f"{len(prompts)} prompts but {n} completions")
        if n == 0:
            return []
        columns = {
            k: v for k, v in kwargs.items() if isinstance(v, (list, tuple, np.ndarray)) and len(v) == n
        }
        # Every sample's user, checked before the backbone pass.
        specs: List[UserSpec] = []
        if isinstance(user_of, str):
            if user_of not in columns:
                if user_of in kwargs:
                    v = kwargs[user_of]
                    size = f" of {len(v)}" if hasattr(v, "__len__") else ""
                    raise InputError(
                        f"reward_fn: column {user_of!r} is a {type(v).__name__}{size}, expected a list of {n} (one per completion)"
                    )
                raise InputError(f"reward_fn: no column {user_of!r} among {sorted(columns)}")
            for i, spec in enumerate(columns[user_of]):
                _check_user(spec, f"{user_of}[{i}]", " or that user's reference triplets", features)
                specs.append(spec)
        else:
            for i in range(n):
                spec = user_of(i, {k: v[i] for k, v in columns.items()})
                _check_user(spec, f"the user that user_of({i}, row) returned", ", a vrf.Posterior or reference triplets", features)
                specs.append(spec)
        if features:
            _, rewards = model.features(vectors=completions)
        else:
            pairs = [
                (_text(p, "user", f"prompts[{i}]"), _text(c, "assistant", f"completions[{i}]"))
                for i, (p, c) in enumerate(zip(prompts, completions))
            ]
            _, rewards = model.features(pairs)
        # Each user is resolved once per call: ids and references by content, posteriors by
        # identity (kept alive in the cache, so an id() is never reused for another one).
        cache: Dict[Hashable, Any] = {}
        out: List[float] = []
        for i, spec in enumerate(specs):
            key = _user_key(spec)
            if key not in cache:
                if isinstance(spec, Posterior):
                    post = spec
                elif isinstance(spec, str):
                    post = model.seen_user(spec)
                else:
                    post = model.user(spec)
                w = np.asarray(post.weights, dtype=np.float64)
                if w.shape != (model.k,):
                    raise InputError(f"sample {i}: the user's weights have shape {w.shape}, the model has K = {model.k}")
                cache[key] = (spec, w)
            out.append(float(np.dot(rewards[i].astype(np.float64), cache[key][1])))
        return out

    reward.__name__ = "vrf_reward"
    return reward
