"""`colcon test` smoke test: the package and its CLI import."""


def test_cli_parses():
    from perception_models.cli import build_parser

    assert build_parser().prog == "perception-models"
