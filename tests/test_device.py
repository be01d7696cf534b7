"""Device and precision resolution (_device.py)."""

import pytest
import torch

from skltransfer._device import (
    SMALL_STEP,
    autocast,
    device_available,
    precision_name,
    resolve_device,
    resolve_precision,
    step_threads,
)

CPU = torch.device("cpu")


def test_auto_picks_cuda_then_mps_then_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == CPU
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_explicit_devices_and_errors(monkeypatch):
    assert resolve_device("cpu") == CPU
    assert resolve_device(torch.device("meta")) == torch.device("meta")
    with pytest.raises(ValueError, match="Unknown device 'gpu0'"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:1")


def test_device_available_counts_cuda_devices(monkeypatch):
    assert device_available(CPU)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_available(torch.device("cuda"))
    assert not device_available(torch.device("cuda:1"))
    assert not device_available(torch.device("xla"))  # no such backend here


def test_precision(monkeypatch):
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    assert resolve_precision("fp16", CPU) is torch.float16
    assert resolve_precision("auto", CPU) is None  # fp32 on the CPU
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", cuda) is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", cuda) is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", CPU)


def test_autocast_runs_in_the_dtype_or_not_at_all():
    a, b = torch.ones(2, 2), torch.ones(2, 2)
    with autocast(CPU, None):
        assert (a @ b).dtype is torch.float32
    with autocast(CPU, torch.bfloat16):
        assert (a @ b).dtype is torch.bfloat16


def test_small_cpu_steps_run_on_one_thread_and_put_the_count_back():
    cpu = torch.device("cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with step_threads(SMALL_STEP - 1, cpu):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with step_threads(SMALL_STEP, cpu):
            assert torch.get_num_threads() == 2
        with step_threads(10, torch.device("cuda")):
            assert torch.get_num_threads() == 2
        with pytest.raises(KeyError), step_threads(10, cpu):
            raise KeyError
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_precision_name_comes_back_from_its_dtype(precision):
    assert precision_name(resolve_precision(precision, CPU)) == precision
