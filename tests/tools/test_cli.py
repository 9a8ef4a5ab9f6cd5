"""The user-facing side of the two CLIs: typos in --set are caught with a suggestion, a missing
model is one line and exit code 2, every option explains itself, --help lists the profiles, the
replay shows its progress, and the replay tools stay off other DDS graphs unless told."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from perception_models.cli import build_parser as models_parser
from perception_models.cli import main as models_main
from perception_nodes.exit_codes import EXIT_BAD_INPUT
from perception_nodes.tools.cli import build_parser, isolate_dds
from perception_nodes.tools.cli import main as perception_main
from perception_nodes.tools.replay import ProgressBar


def _options_without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    out = []
    for a in parser._actions:  # noqa: SLF001 (argparse has no public walk)
        if isinstance(a, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in a.choices.items():
                out += _options_without_help(sub, f"{path} {name}")
        elif not isinstance(a, (argparse._HelpAction, argparse._VersionAction)) and not a.help:  # noqa: SLF001
            out.append(f"{path} {'/'.join(a.option_strings) or a.dest}")
    return out


def test_every_option_of_both_clis_has_help_text():
    missing = _options_without_help(build_parser(), "perception") + _options_without_help(
        models_parser(), "perception-models"
    )
    assert missing == []


def test_help_lists_the_shipped_profiles(capsys):
    with pytest.raises(SystemExit):
        perception_main(["--help"])
    out = capsys.readouterr().out
    for name in ("camera_detection", "camera_full", "synthetic_replay", "pretrained"):
        assert f"  {name} " in out


def test_a_misspelt_set_parameter_is_an_error_naming_the_close_match(capsys, demo_bag, tmp_path):
    code = perception_main(["run", "--profile", "camera_detection", "--set", "detector.score_treshold=0.5"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "detection_node has no parameter 'score_treshold'; did you mean score_threshold?" in err
    argv = [
        "replay",
        "--bag",
        str(demo_bag),
        "--profile",
        "camera_detection",
        "--out",
        str(tmp_path),
        "--set",
        "c.rate=1",
    ]
    code = perception_main(argv)
    assert code == EXIT_BAD_INPUT and "not in profile 'camera_detection'" in capsys.readouterr().err


def test_evaluate_with_a_missing_model_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.onnx"
    assert models_main(["evaluate", "--task", "detection", "--model", str(missing), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"perception-models evaluate: --model {missing}: no such file"
    card = tmp_path / "teacher.card.yaml"
    card.write_text("task: detection\nmodel: gone.onnx\n")
    assert models_main(["evaluate", "--task", "detection", "--model", str(card)]) == 2
    assert "gone.onnx does not exist" in capsys.readouterr().err


def test_progress_bar_shows_frames_of_total_rate_and_eta(tmp_path):
    state = tmp_path / "player_progress.json"
    shown = io.StringIO()
    bar = ProgressBar(state, file=shown)
    bar.poll()  # no file yet: nothing
    assert shown.getvalue() == ""
    state.write_text(json.dumps({"frames": 3, "frames_total": 12, "lost": 0}))
    bar.poll()
    state.write_text(json.dumps({"frames": 12, "frames_total": 12, "lost": 1}))
    bar.close()
    text = shown.getvalue()
    assert "3/12" in text and "12/12" in text and "frame/s" in text and "lost=1" in text


def test_replay_tools_use_a_domain_of_their_own_unless_told():
    env: dict[str, str] = {}
    line = isolate_dds(None, env)
    assert 1 <= int(env["ROS_DOMAIN_ID"]) <= 100 and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "isolated" in line
    env = {"ROS_DOMAIN_ID": "7"}
    assert "(ROS_DOMAIN_ID)" in isolate_dds(None, env) and env == {"ROS_DOMAIN_ID": "7"}
    env = {"ROS_DOMAIN_ID": "7"}
    assert "(--domain)" in isolate_dds(33, env) and env["ROS_DOMAIN_ID"] == "33"
