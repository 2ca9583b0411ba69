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
    from config import readme_with_reference
    readme = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    assert readme == readme_with_reference(readme), 'run: python tools/config.py --update-readme'


def test_readme_names_every_quirk_switch():
    from config import SCHEMA
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


def test_library_packages_hold_no_command_lines_and_the_old_names_are_gone():
    import subprocess
    import sys
    for package in ('config', 'dataloaders', 'deploy', 'engine', 'envs', 'evaluation', 'models', 'reporting', 'utils'):
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in names:
                path = os.path.join(folder, name)
                if name.endswith('.py') and path != os.path.join(ROOT, 'engine', 'cli.py'):
                    assert 'ArgumentParser(' not in open(path, encoding='utf-8').read(), f'{path}: commands go in tools/'
    # The `python -m utils.<name>` shims of earlier versions are gone (nothing was released under them).
    old = subprocess.run([sys.executable, '-m', 'utils.summary', '--help'], cwd=ROOT, capture_output=True, text=True)
    assert old.returncode != 0 and "No module named utils.summary" in old.stderr


def _repository_text_files():
    """Tracked and new (not ignored) files, or every file outside .git where git is unavailable."""
    import subprocess
    try:
        out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                             capture_output=True, check=True).stdout
        names = [n for n in out.decode('utf-8').split('\0') if n]
    except (OSError, subprocess.CalledProcessError):
        names = [os.path.relpath(os.path.join(folder, n), ROOT) for folder, dirs, files in os.walk(ROOT)
                 if '.git' not in folder.split(os.sep) for n in files]
    for name in names:
        path = os.path.join(ROOT, name)
        if not os.path.isfile(path):
            continue
        with open(path, 'rb') as f:
            data = f.read()
        if b'\0' in data:
            continue  # binary
        yield name, data.decode('utf-8', errors='replace')


def test_no_reference_to_documents_outside_the_repository():
    # Built from parts so that this file does not match itself.
    forbidden = ['SPEC' + ' §', 'SPEC' + '.md', 'SPEC' + ' section', '..' + '/shared', '/work' + '/shared',
                 'PAPER' + '_TABLES', 'BASELINES' + '.md', 'DESIGN' + '.md']
    hits = [f'{name}:{i}: {line.strip()[:100]}' for name, text in _repository_text_files()
            for i, line in enumerate(text.splitlines(), 1) if any(word in line for word in forbidden)]
    assert not hits, 'references to documents outside the repository:\n' + '\n'.join(hits)


def test_every_reference_to_docs_original_names_an_existing_section():
    import re
    doc = open(os.path.join(ROOT, 'docs', 'original.md'), encoding='utf-8').read()
    sections = set(re.findall(r'^#{2,4} (\d+(?:\.\d+)*)\.? ', doc, flags=re.M))
    sections |= {f'Appendix {a}' for a in re.findall(r'^#{2,4} Appendix ([A-Z])\b', doc, flags=re.M)}
    items = set(re.findall(r'^(\d+)\. ', doc, flags=re.M))
    assert {'0.3', '4.4', '5', '12.2', 'Appendix A'} <= sections
    reference = re.compile(r'docs/original\.md ((?:§[\d.]*\d(?: items? \d+(?:-\d+)?(?:, \d+(?:-\d+)?)*)?'
                           r'(?:,? (?:and )?§[\d.]*\d)*)|Appendix [A-Z])')
    seen, missing = 0, []
    for name, text in _repository_text_files():
        if name == os.path.join('docs', 'original.md'):
            continue
        for match in reference.finditer(text):
            seen += 1
            ref = match.group(1)
            if ref.startswith('Appendix'):
                if ref not in sections:
                    missing.append(f'{name}: {ref}')
                continue
            for part in re.findall(r'§([\d.]*\d)((?: items? \d+(?:-\d+)?(?:, \d+(?:-\d+)?)*)?)', ref):
                if part[0] not in sections:
                    missing.append(f'{name}: §{part[0]}')
                for first, last in re.findall(r'(\d+)(?:-(\d+))?', part[1]):
                    for n in range(int(first), int(last or first) + 1):
                        if str(n) not in items:
                            missing.append(f'{name}: §{part[0]} item {n}')
    assert seen >= 60, seen
    assert not missing, 'references to sections docs/original.md does not have:\n' + '\n'.join(missing)


def test_docs_original_names_every_quirk_switch():
    from config import SCHEMA
    doc = open(os.path.join(ROOT, 'docs', 'original.md'), encoding='utf-8').read()
    for key in SCHEMA:
        if key.name.startswith('quirks.'):
            assert f'`{key.name}`' in doc, key.name
