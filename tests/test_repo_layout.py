import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_design_card_folders_exist():
    for name in ["dataloaders", "models", "envs", "utils", "yamls", "nyu_v2_samples"]:
        assert os.path.isdir(os.path.join(ROOT, name)), name


def test_ci_runs_readme_commands():
    readme = open(os.path.join(ROOT, "README.md")).read()
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    for command in ["python -m pip install -r requirements.txt", "python -m pytest -q"]:
        assert command in readme and command in ci
