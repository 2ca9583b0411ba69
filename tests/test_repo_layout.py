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
    assert readme == readme_with_reference(readme), 'run: python tools/config.py --update-readme'


def test_readme_names_every_quirk_switch():
    from utils.config import SCHEMA
    readme = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    differences = readme.split('## Differences from the original')[1].split('## Configuration reference')[0]
    for key in SCHEMA:
        if key.name.startswith('quirks.'):
            assert f'`{key.name}' in differences, key.name


def _readme_commands():
    """Every `python <file>.py` command the README documents (scripts and tools/)."""
    import re
    readme = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    return sorted(set(re.findall(r'python ((?:tools/)?[\w-]+\.py)\b', readme)))


def test_every_documented_command_runs_from_another_folder(tmp_path):
    import subprocess
    import sys
    commands = _readme_commands()
    assert {'train_policy.py', 're-train.py', 'test.py', 'tools/demo.py', 'tools/summary.py',
            'tools/plots.py'} <= set(commands)
    env = dict(os.environ, PYTHONPATH='')
    running = {c: subprocess.Popen([sys.executable, os.path.join(ROOT, c), '--help'], cwd=tmp_path, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands}
    for command, process in running.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0 and 'usage:' in out, f'{command}: {err[-500:]}'


def test_library_packages_hold_no_command_lines_and_old_names_point_to_tools():
    import subprocess
    import sys
    for package in ('utils', 'envs', 'models', 'dataloaders'):
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in names:
                path = os.path.join(folder, name)
                if name.endswith('.py') and path != os.path.join(ROOT, 'utils', 'cli.py'):
                    assert 'ArgumentParser(' not in open(path, encoding='utf-8').read(), f'{path}: commands go in tools/'
    old = subprocess.run([sys.executable, '-m', 'utils.summary', '--help'], cwd=ROOT, capture_output=True, text=True)
    assert old.returncode == 0 and 'usage: python tools/summary.py' in old.stdout
    assert old.stderr.splitlines() == ['note: `python -m utils.summary` is deprecated and goes in the next release; '
                                       'run `python tools/summary.py` (or `python -m tools.summary` from the '
                                       'repository root)']
