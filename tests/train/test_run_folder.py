"""The run-folder rule: a folder that holds a run is refused without --resume or --overwrite, and
--overwrite removes what a run wrote and nothing else."""

import pytest

from apexgen.train.run_folder import RunFolderError, check_run_folder, existing_run, remove_previous_run


def finished_run(folder):
    (folder / "checkpoints" / "step_0000006").mkdir(parents=True)
    (folder / "export").mkdir()
    (folder / "export" / "pytorch_lora_weights.safetensors").write_bytes(b"weights")
    (folder / "previews").mkdir()
    (folder / "run.json").write_text("{}")
    (folder / "history.json").write_text("[]")
    return folder


def test_nothing_of_a_run_means_no_run(tmp_path):
    assert existing_run(tmp_path / "missing") == []
    (tmp_path / "checkpoints").mkdir()  # empty, e.g. a run that stopped before its first checkpoint
    (tmp_path / "notes.txt").write_text("mine")
    assert existing_run(tmp_path) == []
    check_run_folder(tmp_path, resume=False, overwrite=False)


def test_a_run_is_named_and_refused_unless_resumed_or_overwritten(tmp_path):
    folder = finished_run(tmp_path)
    assert existing_run(folder) == ["run.json", "checkpoints/ up to step_0000006", "export/"]
    with pytest.raises(
        RunFolderError, match=r"already holds a run \(run.json, .*export/\); pass --resume.*--overwrite"
    ):
        check_run_folder(folder, resume=False, overwrite=False)
    check_run_folder(folder, resume=True, overwrite=False)
    check_run_folder(folder, resume=False, overwrite=True)


def test_overwrite_removes_the_runs_files_and_keeps_the_rest(tmp_path):
    folder = finished_run(tmp_path)
    (folder / "notes.txt").write_text("mine")
    (folder / "cache").mkdir()
    remove_previous_run(folder)
    assert sorted(path.name for path in folder.iterdir()) == ["cache", "notes.txt"]
    assert existing_run(folder) == []


def test_a_run_whose_summary_has_the_old_name_is_still_protected(tmp_path):
    (tmp_path / "distill.json").write_text("{}")  # what `distill` wrote before run.json
    with pytest.raises(RunFolderError, match=r"already holds a run \(distill.json\)"):
        check_run_folder(tmp_path, resume=False, overwrite=False)
    remove_previous_run(tmp_path)
    assert existing_run(tmp_path) == []
