"""``python -m tfasc.device build``: a user's mistake is one line and exit status 2."""

from tfasc.device.__main__ import main


def test_an_unknown_target_or_a_folder_without_a_bundle_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["build", str(tmp_path), "--target", "cortex-m9"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "cortex-m9" in error and "cortex-m4" in error
    assert main(["build", str(tmp_path), "--target", "cortex-m4"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "model_int8.tflite" in error and str(tmp_path) in error
