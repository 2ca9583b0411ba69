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


def test_readme_configuration_reference_is_in_sync_with_the_schema():
    from utils.config import readme_with_reference
    readme = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    assert readme == readme_with_reference(readme), 'run: python -m utils.config --update-readme'


def test_readme_names_every_quirk_switch():
    from utils.config import SCHEMA
    readme = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    differences = readme.split('## Differences from the original')[1].split('## Configuration reference')[0]
    for key in SCHEMA:
        if key.name.startswith('quirks.'):
            assert f'`{key.name}' in differences, key.name
