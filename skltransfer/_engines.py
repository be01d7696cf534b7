"""Inference engines for frozen passes on the CPU: ONNX Runtime and OpenVINO.

A frozen estimator's forward pass (the model up to its layer, with the
pooling) is exported once to ONNX with dynamic batch (and sequence) axes and
run by an engine instead of torch, faster on the CPU for the same weights
(see the performance guide and ``benchmarks/bench_engines.py``). The engine is a
forward function swapped into the one runner of :mod:`._inference`: batching,
ordering and prefetching stay as they are.

- :func:`engine_spec`: the ``engine`` parameter resolved for a pass
  (``"auto"``: an installed engine on the CPU, torch on a GPU), or None for
  torch; :func:`check_engine` is its validation in ``fit``.
- :func:`engine_forward`: the forward function of an engine, started once
  per model and configuration in the process (``engine_runners`` in
  :mod:`._process_state`), exported once on disk (:func:`engine_cache_dir`),
  keyed by the weights' fingerprint, the forward's configuration, the input
  policy and the engine. A model that cannot be exported (Python control
  flow that depends on the data, an operation the exporter rejects) or whose
  exported outputs differ from torch's falls back to torch, with one
  :class:`~skltransfer.exceptions.EngineFallbackWarning`.

Exported models are written into a temporary folder renamed into place, so
concurrent writers and a killed writer never leave a partial model that a
reader would load.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ._device import modes_restored, resolve_device, resolve_precision
from ._process_state import engine_runners
from ._validation import ENGINES
from .caching import hash_bytes, module_fingerprint
from .exceptions import EngineFallbackWarning, missing_dependency, warn_at_caller

__all__ = [
    "ENGINES",
    "EngineSpec",
    "check_engine",
    "engine_cache_dir",
    "engine_forward",
    "engine_spec",
    "inputs_forward",
]

# The engines "auto" tries on the CPU, fastest first for each input kind (see
# benchmarks/bench_engines.py). Texts: OpenVINO's transform of 1,000
# sentences ran 110 and 108 texts/s against ONNX Runtime's 94 and 99 in two
# runs on one two-core machine, level (185 against 188) on another.
_PREFERENCE = {
    "image": ("openvino", "onnxruntime"),
    "text": ("openvino", "onnxruntime"),
}
# The precisions each engine runs (None: float32); ONNX Runtime's CPU kernels
# are float32.
_PRECISIONS = {
    "onnxruntime": (None,),
    "openvino": (None, torch.bfloat16, torch.float16),
}
_OPENVINO_PRECISION = {None: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
# Part of every exported model's key: a change to how models are exported.
_EXPORT_FORMAT = "onnx-v1"
_OPSET = 17
# What an export is checked against: the largest difference to torch's outputs,
# relative to their largest magnitude (float32), or the lowest row cosine
# (reduced precision).
_RTOL = 1e-3
_MIN_COSINE = 0.99
ENGINE_CACHE_ENV = "SKLTRANSFER_ENGINE_CACHE"
# With engine="auto", passes over fewer samples run on torch: the first export
# of a real model costs seconds, more than such a pass gains.
AUTO_MIN_SAMPLES = 32


@dataclass(frozen=True)
class EngineSpec:
    """An engine for one forward pass.

    ``key`` says what the forward computes besides the model's weights and
    the input shape (layer, pooling, normalisation); ``dtype`` is the
    precision (None: float32); passes over fewer than ``min_samples`` run on
    torch.
    """

    name: str
    key: tuple = ()
    dtype: torch.dtype | None = None
    min_samples: int = field(default=0, compare=False)


@functools.cache
def installed(engine: str) -> bool:
    """Whether the package of ``engine`` can be imported."""
    return importlib.util.find_spec(engine) is not None


def check_engine(engine: str, device, precision: str, *, compile: bool = False):
    """Raise if an explicitly named engine cannot run an estimator's pass
    (its ``engine``, ``device``, ``precision`` and ``compile`` parameters).

    ``"auto"`` and ``"torch"`` always can. An engine that is not installed
    raises :class:`~skltransfer.exceptions.MissingDependencyError`; one asked
    for a GPU, a precision it does not run, or with ``compile=True``, a
    ``ValueError``.
    """
    if engine in ("auto", "torch"):
        return
    device = resolve_device(device)
    _check_engine(engine, device, resolve_precision(precision, device), compile)


def _check_engine(engine: str, device: torch.device, dtype, compile: bool) -> None:
    if engine in ("auto", "torch"):
        return
    if not installed(engine):
        raise missing_dependency(engine, f"engine={engine!r}")
    if device.type != "cpu":
        raise ValueError(
            f"engine={engine!r} runs on the CPU, but device resolves to "
            f"{str(device)!r}; use engine='auto' or 'torch' on a GPU."
        )
    if dtype not in _PRECISIONS[engine]:
        raise ValueError(
            f"engine={engine!r} does not run precision {_name(dtype)}; use "
            "precision='fp32', or engine='openvino' or 'torch'."
        )
    if compile:
        raise ValueError(
            f"compile=True compiles the torch forward pass; it does not apply to "
            f"engine={engine!r}. Use engine='torch' to compile."
        )


def engine_spec(
    engine: str,
    device: torch.device,
    dtype,
    *,
    kind: str,
    key: tuple = (),
    compile: bool = False,
) -> EngineSpec | None:
    """The engine a pass runs on, or None for torch.

    ``"auto"`` takes the fastest installed engine for ``kind`` ("image" or
    "text") that runs ``dtype`` when the pass is on the CPU and not compiled,
    for passes of :data:`AUTO_MIN_SAMPLES` or more; else torch.
    """
    _check_engine(engine, device, dtype, compile)
    if engine == "torch":
        return None
    if engine == "auto":
        if device.type != "cpu" or compile:
            return None
        usable = [
            e for e in _PREFERENCE[kind] if dtype in _PRECISIONS[e] and installed(e)
        ]
        if not usable:
            return None
        return EngineSpec(usable[0], tuple(key), dtype, AUTO_MIN_SAMPLES)
    return EngineSpec(engine, tuple(key), dtype)


def engine_cache_dir() -> str:
    """Where exported models are kept: ``$SKLTRANSFER_ENGINE_CACHE``, else
    ``skltransfer/engines`` under ``$XDG_CACHE_HOME`` (``~/.cache``)."""
    root = os.environ.get(ENGINE_CACHE_ENV)
    if root:
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(base, "skltransfer", "engines")


# -- the forward function -------------------------------------------------------


def engine_forward(
    spec: EngineSpec,
    model: torch.nn.Module,
    forward: Callable,
    example: Callable[[], object],
    signature: tuple = (),
) -> Callable:
    """``forward`` (a batch -> a tensor of rows, a function of ``model``) run
    by the engine of ``spec``, or ``forward`` itself where the engine cannot
    run it (said once per weights and configuration in the process).

    ``example()`` gives a CPU batch to export with; it is called only when
    the engine is started. ``spec.key`` must describe everything ``forward``
    computes besides ``model``'s weights and the input, and ``signature``
    the input's shape beyond the dynamic axes (an image size: the exported
    graph takes that size only).
    """
    # Started engines are shared by the weights' fingerprint, not the module:
    # the copies of one pretrained model that fits make (a fine-tuner's frozen
    # pass, every fold of a search) start the engine once. The fingerprint is
    # remembered on the model with its tensors' versions: weights changed in
    # place since the start make a new export.
    key = (module_fingerprint(model), spec, tuple(signature))
    runner = engine_runners.get_or_put(
        key, lambda: _start(spec, model, forward, example())
    )
    return forward if runner is None else runner


def inputs_forward(
    spec: EngineSpec | None, model, forward: Callable, inputs, n_samples=None
) -> Callable:
    """``forward`` over ``inputs`` run by the engine of ``spec``
    (:func:`engine_forward`, exported at the first samples of ``inputs``,
    for their size) when the pass has ``spec.min_samples`` samples or more
    (``n_samples``, default ``len(inputs)``); else ``forward``."""
    n = len(inputs) if n_samples is None else n_samples
    if spec is None or n < max(spec.min_samples, 1):
        return forward
    return engine_forward(
        spec,
        model,
        forward,
        lambda: inputs.example(2),
        signature=inputs.batch_size_key(),
    )


def _start(spec: EngineSpec, model, forward, example):
    """The engine's runner for ``forward``, or None (with a warning) when the
    model cannot be exported or runs differently on the engine."""
    example = _two_rows(example)
    try:
        path, traced = exported_model(spec, model, forward, example)
        runner = _Runner(spec, path)
        _check_outputs(spec, runner, forward, example, traced)
    except Exception as exc:  # noqa: BLE001 - any export or engine failure: torch
        # The first cause: a warning turned error inside torch's C++ code
        # comes back as a SystemError raised from it.
        while (cause := _cause(exc)) is not None:
            exc = cause
        reason = str(exc).strip().splitlines()
        warn_at_caller(
            EngineFallbackWarning(
                f"The model could not run on {spec.name} ({type(exc).__name__}: "
                f"{reason[0] if reason else ''}); it runs on torch instead."
            ),
            EngineFallbackWarning,
        )
        return None
    return runner


def _cause(exc: BaseException) -> BaseException | None:
    return exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def _two_rows(batch):
    """At least two rows, so that no axis of size 1 is taken as fixed."""
    if isinstance(batch, dict):
        return {k: _two_rows(v) for k, v in batch.items()}
    if len(batch) >= 2:
        return batch[:2]
    return torch.cat([batch, batch[-1:]])


class _Runner:
    """A started engine: a CPU batch (tensor or dict of tensors) -> a tensor."""

    def __init__(self, spec: EngineSpec, path: str):
        self.run, self.names = _STARTERS[spec.name](path, spec.dtype)
        self.name = spec.name

    def __call__(self, batch) -> torch.Tensor:
        if isinstance(batch, dict):
            feed = {n: batch[n].cpu().contiguous().numpy() for n in self.names}
        else:
            feed = {self.names[0]: batch.cpu().contiguous().numpy()}
        return torch.from_numpy(self.run(feed))


def _threads() -> int:
    # The engines follow torch's thread count, which users set to share cores.
    return max(1, torch.get_num_threads())


def _start_onnxruntime(path: str, dtype):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(feed):
        return session.run(None, feed)[0]

    return run, [i.name for i in session.get_inputs()]


def _start_openvino(path: str, dtype):
    import openvino as ov

    config = {
        "INFERENCE_PRECISION_HINT": _OPENVINO_PRECISION[dtype],
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": _threads(),
    }
    compiled = ov.Core().compile_model(path, "CPU", config)
    request = compiled.create_infer_request()
    lock = threading.Lock()  # one request: one batch at a time

    def run(feed):
        with lock:
            request.infer(feed)
            # The request reuses its output buffer for the next batch.
            return request.get_output_tensor(0).data.copy()

    return run, [i.get_any_name() for i in compiled.inputs]


_STARTERS = {"onnxruntime": _start_onnxruntime, "openvino": _start_openvino}


def _check_outputs(
    spec: EngineSpec, runner: _Runner, forward, example, traced: str = ""
) -> None:
    """Raise if the engine's outputs differ from torch's on ``example`` and on
    a batch of another shape and values (three rows, negated images or one
    token fewer): a size recorded as a constant, or a branch of Python control
    flow taken for the example only (``traced``: what tracing warned), would
    not fit it."""
    _check_batch(spec, runner, forward, example)
    if isinstance(example, dict):
        other = {k: torch.cat([v, v[:1]])[:, :-1] for k, v in example.items()}
    else:
        other = -torch.cat([example, example[:1]])
    try:
        _check_batch(spec, runner, forward, other)
    except ValueError as exc:
        if not traced:
            raise
        raise ValueError(f"{exc} on other inputs; tracing warned: {traced}") from None


def _check_batch(spec: EngineSpec, runner: _Runner, forward, example) -> None:
    with torch.inference_mode():
        expected = forward(example).float().numpy()
    got = runner(example).float().numpy()
    if got.shape != expected.shape:
        raise ValueError(f"outputs of shape {got.shape}, not {expected.shape}")
    if spec.dtype is None:
        scale = max(float(np.abs(expected).max()), 1e-6)
        error = float(np.abs(got - expected).max()) / scale
        if not error <= _RTOL:
            raise ValueError(f"outputs differ from torch's by {error:.2g} (relative)")
        return
    a, b = got.reshape(len(got), -1), expected.reshape(len(expected), -1)
    cosine = (a * b).sum(1) / np.maximum(
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12
    )
    if not cosine.min() >= _MIN_COSINE:
        raise ValueError(f"outputs differ from torch's (cosine {cosine.min():.4f})")


# -- export and the disk cache --------------------------------------------------


def exported_model(spec: EngineSpec, model, forward, example) -> tuple[str, str]:
    """The path of ``forward`` exported to ONNX for ``spec``, from the disk
    cache, or exported now and put there; and the first warning of tracing
    ("" if none, or if found on disk)."""
    folder = os.path.join(engine_cache_dir(), _model_key(spec, model, example))
    path = os.path.join(folder, "model.onnx")
    traced = []
    if not os.path.exists(path):

        def write(tmp):
            traced.extend(_export(model, forward, example, tmp))

        _write_folder(folder, write)
    return path, traced[0] if traced else ""


def _model_key(spec: EngineSpec, model, example) -> str:
    if isinstance(example, dict):
        # Batch and sequence axes are dynamic: only names and types matter.
        inputs = sorted((k, str(v.dtype)) for k, v in example.items())
    else:
        inputs = (str(example.dtype), tuple(example.shape[1:]))
    return hash_bytes(
        _EXPORT_FORMAT,
        torch.__version__,
        spec.name,
        _name(spec.dtype),
        module_fingerprint(model),
        repr(spec.key),
        repr(inputs),
    )


def _write_folder(folder: str, write: Callable[[str], None]) -> None:
    """Make ``folder`` with ``write(path of model.onnx)``, whole or not at all.

    The files are written in a temporary folder beside it, renamed into place
    once complete; a writer that finds the folder already there (another
    process finished first) keeps that one.
    """
    root = os.path.dirname(folder)
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=root, prefix=".partial-")
    try:
        write(os.path.join(tmp, "model.onnx"))
        try:
            os.rename(tmp, folder)
        except OSError:
            if not os.path.exists(os.path.join(folder, "model.onnx")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Exported(torch.nn.Module):
    """``forward`` as a module of positional tensors, ``model`` as its weights."""

    def __init__(self, model, forward, names):
        super().__init__()
        self.model = model
        self.names = names
        self.run = forward

    def forward(self, *tensors):
        if self.names is None:
            return self.run(tensors[0])
        return self.run(dict(zip(self.names, tensors, strict=True)))


def _export(model, forward, example, path: str) -> list[str]:
    """Export ``forward`` at ``example`` to ONNX, batch (and sequence) axes
    dynamic; return the first line of each warning of the tracer.

    Tracing records the operations run for ``example``: Python control flow
    on tensors is recorded as the branch taken, with a warning. Models of
    Hugging Face warn so on shapes too, harmlessly, so the warnings are only
    reported; :func:`_check_outputs` decides.
    """
    names = list(example) if isinstance(example, dict) else None
    args = tuple(example[n] for n in names) if names else (example,)
    input_names = names or ["input"]
    axes = {0: "batch", 1: "sequence"} if names else {0: "batch"}
    # The exporter puts back the training flag of the module it is given on
    # every submodule: the wrapper is in eval mode as the model is, and each
    # submodule of the model gets its own mode back after.
    with (
        torch.inference_mode(False),
        torch.no_grad(),
        torch.autocast("cpu", enabled=False),
        warnings.catch_warnings(record=True) as caught,
        modes_restored(model),
    ):
        warnings.simplefilter("always")
        args = tuple(a.clone() for a in args)
        wrapper = _Exported(model, forward, names).eval()
        # Rows of texts are per text (pooled) or per token (the token states
        # of a frozen prefix, as long as the batch's longest text).
        per_token = names is not None and wrapper(*args).ndim > 2
        output = axes if per_token else {0: "batch"}
        dynamic = {n: axes for n in input_names} | {"output": output}
        torch.onnx.export(
            wrapper,
            args,
            path,
            dynamo=False,
            input_names=input_names,
            output_names=["output"],
            dynamic_axes=dynamic,
            opset_version=_OPSET,
        )
    return [
        str(w.message).strip().split("\n")[0]
        for w in caught
        if issubclass(w.category, torch.jit.TracerWarning)
    ]


def _name(dtype) -> str:
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.")
