"""The command line's answers to interruptions and conflicting flags: an exit code and one line, no traceback."""

import pytest

import apexgen.t2i.train
from apexgen.cli import main


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["distill", "--out", str(tmp_path / "run"), "--resume", "--overwrite"])
    assert stopped.value.code == 2
    assert "argument --overwrite: not allowed with argument --resume" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_ctrl_c_outside_training_exits_130_with_one_line(tmp_path, monkeypatch, caplog, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(apexgen.t2i.train, "train_teacher", interrupted)
    assert main(["train-teacher", "--out", str(tmp_path / "teacher")]) == 130
    assert [record.getMessage() for record in caplog.records] == ["interrupted by Ctrl-C"]
    assert "Traceback" not in caplog.text + "".join(capsys.readouterr())
