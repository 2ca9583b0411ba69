"""The configuration reference (docs/config.md), generated from the schema."""
from __future__ import annotations

import yaml

from config.schema import ALL, REQUIRED, SCHEMA, WEIGHTING_METHODS, Derived, Key


def _doc_required(key: Key) -> str:
    if not key.required_by:
        return '—'
    conditions = set(key.required_by.values())
    if len(conditions) == 1:
        condition = conditions.pop()
        scripts = 'all scripts' if set(key.required_by) == set(ALL) else ', '.join(key.required_by)
        return scripts if condition is None else f'{scripts} if `{condition[0]}` is {condition[1]!r}'
    return ', '.join(script if condition is None else f'{script} if `{condition[0]}` is {condition[1]!r}'
                     for script, condition in key.required_by.items())


def _doc_default(key: Key) -> str:
    if key.default is REQUIRED:
        return '—'
    if isinstance(key.default, Derived):
        return f'`{key.default.source}`'
    return f'`{yaml.safe_dump(key.default).splitlines()[0].removesuffix(" ...")}`'


def _cell(text: str) -> str:
    """Escape for a markdown table cell (backslashes, then pipes)."""
    return text.replace('\\', '\\\\').replace('|', '\\|')


def schema_markdown() -> str:
    """The configuration reference (docs/config.md): every key, then the quirk switches with the modules they affect."""
    lines = ['| key | type / allowed values | default | required by | meaning |', '|---|---|---|---|---|']
    for key in SCHEMA:
        if key.section == 'quirks':
            continue
        meaning = ('**Unused** (accepted for compatibility). ' if key.unused else '') + key.meaning
        if key.path:
            meaning += ' Relative paths resolve against the repository root.'
        lines.append(f'| `{key.name}` | {_cell(key.check.describe())} | {_doc_default(key)} | '
                     f'{_doc_required(key)} | {_cell(meaning)} |')
    lines += ['', 'Arguments of the weighting methods (`weighting_args:`; absent = the default):', '',
              '| weighting | argument | type / allowed values | default | meaning |', '|---|---|---|---|---|']
    from envs.weighting import WEIGHTINGS
    for name in WEIGHTING_METHODS:
        for arg, spec in WEIGHTINGS[name].ARGS.items():
            default = f'`{yaml.safe_dump(spec.default).splitlines()[0].removesuffix(" ...")}`'
            lines.append(f'| `{name}` | `{arg}` | {_cell(spec.check.describe())} | {default} | {_cell(spec.meaning)} |')
    lines += ['', 'Quirk switches (section `quirks:`); every default keeps the original behaviour:', '',
              '| key | type / allowed values | default | modules affected | meaning |', '|---|---|---|---|---|']
    for key in SCHEMA:
        if key.section == 'quirks':
            modules = ', '.join(f'`{m}`' for m in key.modules)
            lines.append(f'| `{key.name}` | {_cell(key.check.describe())} | {_doc_default(key)} | {modules} | '
                         f'{_cell(key.meaning)} |')
    return '\n'.join(lines) + '\n'


REFERENCE_PAGE = 'docs/config.md'  # relative to the repository root
REFERENCE_START = '<!-- config-reference:start -->'
REFERENCE_END = '<!-- config-reference:end -->'


def with_reference(text: str) -> str:
    """`text` (docs/config.md) with the block between the config-reference markers replaced by schema_markdown()."""
    if REFERENCE_START not in text or REFERENCE_END not in text:
        raise ValueError(f'{REFERENCE_PAGE} lacks the markers {REFERENCE_START} / {REFERENCE_END}')
    head, rest = text.split(REFERENCE_START, 1)
    _, tail = rest.split(REFERENCE_END, 1)
    return f'{head}{REFERENCE_START}\n{schema_markdown()}{REFERENCE_END}{tail}'


readme_with_reference = with_reference  # the name of earlier versions, when the reference was in README.md
