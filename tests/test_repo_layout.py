import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_design_card_folders_exist():
    for name in ["dataloaders", "models", "envs", "utils", "yamls", "nyu_v2_samples"]:
        assert os.path.isdir(os.path.join(ROOT, name)), name


def test_ci_runs_readme_commands():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    for command in ["python -m pip install -r requirements.txt", "python -m pytest -q"]:
        assert command in readme and command in ci


def _read(*parts):
    return open(os.path.join(ROOT, *parts), encoding='utf-8').read()


def _documentation():
    """README.md and every docs/*.md page, as {relative path: text}."""
    names = ['README.md'] + sorted(os.path.join('docs', n) for n in os.listdir(os.path.join(ROOT, 'docs'))
                                   if n.endswith('.md'))
    return {name: _read(name) for name in names}


def test_readme_is_a_front_page_and_every_page_links_back():
    assert len(_read('README.md').splitlines()) <= 250
    for name, text in _documentation().items():
        if name != 'README.md':
            head = '\n'.join(text.splitlines()[:8])
            assert text.startswith('# ') and '](../README.md)' in head, f'{name}: a title, then a purpose line linking back'


def test_configuration_reference_is_in_sync_with_the_schema():
    from config.reference import REFERENCE_PAGE, with_reference
    page = _read(REFERENCE_PAGE)
    assert page == with_reference(page), 'run: python tools/config.py --update-reference'


def test_differences_page_names_every_quirk_switch():
    from config import SCHEMA
    differences = _read('docs', 'differences.md').split('## Parity with the original')[0]
    for key in SCHEMA:
        if key.name.startswith('quirks.'):
            assert f'`{key.name}' in differences, key.name


def _code(text):
    """The code of a markdown text: fenced blocks and inline spans (which may wrap across lines)."""
    import re
    fence = re.compile(r'^```[^\n]*\n(.*?)^```', flags=re.M | re.S)
    return fence.findall(text) + re.findall(r'`([^`]+)`', fence.sub('', text))


def _documented_commands():
    """Every command README.md and docs/*.md show in code: `python <file>.py` (the scripts, tools/) and
    `python -m <module>` (any module but pip and pytest), as {('file' or 'module', name): [page, ...]}."""
    import re
    found = {}
    for name, text in _documentation().items():
        for code in _code(text):
            code = code.replace('\\\n', ' ')
            for path in re.findall(r'(?:python3?|torchrun(?: --[\w-]+ \S+)*) ((?:tools/)?[\w-]+\.py)\b', code):
                found.setdefault(('file', path), []).append(name)
            for module in re.findall(r'python3? -m ([A-Za-z_][\w.]*)', code):
                if module not in ('pip', 'pytest') and not module.endswith('.'):  # not `tools.<name>`
                    found.setdefault(('module', module), []).append(name)
    return found


def test_every_documented_command_runs_from_the_root_and_from_another_folder(tmp_path):
    """`--help` of every command the documentation shows: a file from the root as written and by its full path
    from another folder; each tools/ command also as `python -m tools.<name>` from the root, as the README says."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor
    commands = _documented_commands()
    files = {name for kind, name in commands if kind == 'file'}
    assert {'train_policy.py', 're-train.py', 'test.py', 'tools/demo.py', 'tools/summary.py', 'tools/plots.py',
            'tools/config.py', 'tools/cpu_table.py'} <= files, files
    runs = {}
    for kind, name in commands:
        pages = ', '.join(sorted(set(commands[(kind, name)])))
        if kind == 'file':
            runs[(f'python {name}', ROOT)] = ([sys.executable, name, '--help'], pages)
            runs[(f'python {name}', str(tmp_path))] = ([sys.executable, os.path.join(ROOT, name), '--help'], pages)
            if name.startswith('tools/'):
                module = 'tools.' + name[len('tools/'):-len('.py')]
                runs[(f'python -m {module}', ROOT)] = ([sys.executable, '-m', module, '--help'], pages)
        else:
            runs[(f'python -m {name}', ROOT)] = ([sys.executable, '-m', name, '--help'], pages)
    env = dict(os.environ, PYTHONPATH='')

    def run(item):
        (command, cwd), (argv, pages) = item
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or 'usage:' not in done.stdout:
            return f'{command} --help in {cwd} (shown in {pages}): exit {done.returncode}: {done.stderr.strip()[-300:]}'
        return None

    # Side by side, a few at a time: most --help import torch (seconds and ~0.7 GB each).
    with ThreadPoolExecutor(max_workers=6) as pool:
        failures = [f for f in pool.map(run, sorted(runs.items())) if f]
    assert not failures, '\n'.join(failures)


def _slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    import re
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip().lower())
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def _anchors(text):
    import re
    text = re.sub(r'^```.*?^```', '', text, flags=re.M | re.S)
    anchors, seen = set(), {}
    for heading in re.findall(r'^#{1,6} (.+?)\s*#*$', text, flags=re.M):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f'{slug}-{seen[slug]}')
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_every_relative_link_of_the_documentation_resolves():
    import re
    broken = []
    for name, text in _documentation().items():
        text = re.sub(r'^```.*?^```', '', text, flags=re.M | re.S)
        text = re.sub(r'`[^`]*`', '', text)
        for target in re.findall(r'\]\(([^)\s]+)(?:\s+"[^"]*")?\)', text):
            if re.match(r'[a-z][a-z0-9+.-]*:', target):  # https:, mailto:
                continue
            path, _, anchor = target.partition('#')
            full = os.path.normpath(os.path.join(ROOT, os.path.dirname(name), path)) if path else os.path.join(ROOT, name)
            if not os.path.exists(full):
                broken.append(f'{name}: {target} (no such file)')
            elif anchor and full.endswith('.md') and anchor not in _anchors(open(full, encoding='utf-8').read()):
                broken.append(f'{name}: {target} (no such section)')
    assert not broken, 'broken links:\n' + '\n'.join(broken)


def test_the_documentation_names_no_removed_command():
    import re
    hits = [f'{name}: {m}' for name, text in _documentation().items() for m in re.findall(r'-m utils\.[\w<>]+', text)]
    assert not hits, hits


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
