"""Reading a YAML config: duplicate-key-safe parsing, validation against the schema, defaults, paths.

    opt = load_config('yamls/adashare/nyu_v2_3task.yml', 'train_policy')

The config stays a plain nested dict (`opt['train']['lr']`, as in the original); `opt['_source']` holds
the absolute path of the yaml. Errors name the file, the key, the value and what was expected.
"""
from __future__ import annotations

import difflib
import os
import re
from typing import Any, Mapping, Sequence

import yaml

from config.schema import (BACKBONE_BLOCKS, DATASET_TASKS, FIXED_TASK_CHANNELS, KEYS, KNOWN_ANSWER_SEG_CLASSES,
                           MULTI_COLUMN, REPO_ROOT, REQUIRED, SCHEMA, SCRIPTS, SECTIONS, TRAIN_RETRAIN, ConfigError,
                           ConfigFileNotFoundError, Derived, Key, backbone_blocks)
from utils.checks import Check, Nullable, is_int, show

# ----------------------------------------------------------------------------------------- YAML reading
class _DuplicateKeyError(Exception):
    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(key, line, first_line)
        self.key, self.line, self.first_line = key, line, first_line


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads 1e-4 as a float (plain YAML 1.1 reads a string)."""


def _construct_mapping(loader: _ConfigLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise _DuplicateKeyError(key, line, seen[key])
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_ConfigLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$'),
    list('-+0123456789'))


def _read_yaml(path: str) -> Any:
    if not os.path.exists(path):
        raise ConfigFileNotFoundError(f'{path}: config file not found (looked at {os.path.abspath(path)}); '
                                      f'expected a YAML file such as yamls/adashare/nyu_v2_3task.yml')
    if not os.path.isfile(path):
        raise ConfigError(f'{path}: is not a file; expected a YAML config file')
    try:
        with open(path, encoding='utf-8') as handle:
            return yaml.load(handle, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKeyError as err:
        raise ConfigError(f'{path}: line {err.line}: key {err.key!r} appears twice (first on line '
                          f'{err.first_line}); expected each key once per section') from None
    except yaml.YAMLError as err:
        detail = ' '.join(str(err).split())
        raise ConfigError(f'{path}: not valid YAML ({detail}); expected a mapping of config keys') from None
    except UnicodeDecodeError as err:
        raise ConfigError(f'{path}: not a UTF-8 text file ({err.reason}); expected a YAML config file') from None


# ----------------------------------------------------------------------------------------- validation
_MISSING = object()


def _lookup(opt: Mapping[str, Any], dotted: str) -> Any:
    """The value at `dotted`, or _MISSING when it (or a section on the way) is absent or not a mapping."""
    node: Any = opt
    for part in dotted.split('.'):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _section_ok(opt: Mapping[str, Any], section: str) -> bool:
    return section == '' or isinstance(_lookup(opt, section), Mapping)


def _required_reason(key: Key, opt: Mapping[str, Any], script: str) -> str | None:
    """'required by <script>[ when ...]' if `key` is required for this script and this config, else None."""
    if script not in key.required_by or _lookup(opt, 'architecture') in key.not_for:
        return None
    condition = key.required_by[script]
    if condition is None:
        return f'required by {script}'
    other, wanted = condition
    actual = _lookup(opt, other)
    if type(actual) is not type(wanted) or actual != wanted:  # `1` is not `True`: a type error of its own
        return None
    return f'required by {script} when {other} is {wanted!r}'


def _suggest(dotted: str) -> str | None:
    """The closest known key: the same name in another section, else a near name here, else a near name elsewhere."""
    section, _, leaf = dotted.rpartition('.')
    prefix = section + '.' if section else ''
    by_leaf: dict[str, str] = {}
    for key in SCHEMA:
        by_leaf.setdefault(key.leaf, key.name)
    if leaf in by_leaf:
        return by_leaf[leaf]
    siblings = sorted({k.name[len(prefix):].split('.')[0] for k in SCHEMA if k.name.startswith(prefix)})
    close = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
    if close:
        return prefix + close[0]
    close = difflib.get_close_matches(leaf, sorted(by_leaf), n=1, cutoff=0.75)
    return by_leaf[close[0]] if close else None


def _unknown_keys(node: Mapping[str, Any], section: str, source: str, errors: list[str]) -> None:
    """Every key of `node` must be a schema key or section below `section` (recursively)."""
    prefix = section + '.' if section else ''
    for name, value in node.items():
        dotted = prefix + str(name)
        if dotted in KEYS:
            continue
        if dotted in SECTIONS:
            if isinstance(value, Mapping):
                _unknown_keys(value, dotted, source, errors)
            elif value is not None:  # an empty section (`quirks:`) is fine
                names = ', '.join(k.leaf for k in SCHEMA if k.section == dotted)
                errors.append(f'{source}: {dotted} = {show(value)}: expected a section (a mapping) with keys '
                              f'from: {names}')
            continue
        suggestion = _suggest(dotted)
        if suggestion:
            errors.append(f'{source}: {dotted} = {show(value)}: unknown key, did you mean {suggestion}?')
        else:
            known = sorted({k.name[len(prefix):].split('.')[0] for k in SCHEMA if k.name.startswith(prefix)})
            where = f'in {section}' if section else 'at the top level'
            errors.append(f'{source}: {dotted} = {show(value)}: unknown key; expected one of the keys '
                          f'{where}: {", ".join(known)}')


def _non_null(key: Key) -> Check:
    """The check without its 'or null': a required key needs a real value."""
    return key.check.inner if isinstance(key.check, Nullable) else key.check


def _leaf_errors(opt: Mapping[str, Any], script: str, source: str) -> list[str]:
    """Type/range errors of the present keys, and required keys that are missing (or null)."""
    errors = []
    for key in SCHEMA:
        if not _section_ok(opt, key.section):
            continue  # reported as a malformed or missing section
        value = _lookup(opt, key.name)
        reason = _required_reason(key, opt, script)
        if value is _MISSING:
            if reason:
                errors.append(f'{source}: {key.name} is missing: {reason}; expected {_non_null(key).describe()}')
            continue
        problem = key.check.problem(value)
        if problem:
            errors.append(f'{source}: {key.name} = {show(value)}: {problem}')
        elif value is None and reason:
            errors.append(f'{source}: {key.name} = None: {reason}; expected {_non_null(key).describe()}')
    return errors


def _missing_sections(opt: Mapping[str, Any], script: str, source: str) -> list[str]:
    """A section that holds required keys but is absent altogether gets one error line."""
    errors = []
    for section in SECTIONS:
        if _lookup(opt, section) is not _MISSING:
            continue
        required = [k.leaf for k in SCHEMA if k.section == section and _required_reason(k, opt, script)]
        if required:
            errors.append(f'{source}: {section} is missing: required by {script}; expected a section with keys '
                          f'{", ".join(required)}')
    return errors


# Cross-key rules: each gets the (type-checked) config and the script, and yields (key, value, problem).
def _rule_lengths(opt: Mapping[str, Any], script: str):
    tasks = opt['tasks']
    for name in ('tasks_num_class', 'lambdas'):
        values = opt.get(name)
        if values is not None and len(values) != len(tasks):
            yield name, values, f'expected {len(tasks)} values, one per task of tasks = {tasks!r}'


def _rule_tasks(opt: Mapping[str, Any], script: str):
    tasks, dataset = opt['tasks'], opt['dataload']['dataset']
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    if repeated:
        yield 'tasks', tasks, f'expected each task at most once ({", ".join(map(repr, repeated))} repeated)'
    foreign = [t for t in tasks if t not in DATASET_TASKS[dataset]]
    if foreign:
        yield 'tasks', tasks, (f'{", ".join(map(repr, foreign))} not available with dataload.dataset = '
                               f'{dataset!r}; expected tasks from {", ".join(DATASET_TASKS[dataset])}')


def _rule_channels(opt: Mapping[str, Any], script: str):
    tasks, classes, dataset = opt['tasks'], opt['tasks_num_class'], opt['dataload']['dataset']
    if len(classes) != len(tasks):
        return  # reported by _rule_lengths
    for task, n in zip(tasks, classes):
        if task in FIXED_TASK_CHANNELS and n != FIXED_TASK_CHANNELS[task]:
            yield 'tasks_num_class', classes, f'expected {FIXED_TASK_CHANNELS[task]} for task {task!r}'
        if task == 'seg' and dataset == 'CityScapes' and n not in (2, 7, 19):
            yield 'tasks_num_class', classes, ("expected 2, 7 or 19 seg classes for CityScapes (label2/label7/"
                                               "label19)")
        if task == 'seg' and dataset == 'Taskonomy' and n != 17:
            yield 'tasks_num_class', classes, 'expected 17 seg classes for Taskonomy (semseg_prior_factor.npy)'
        if task in ('seg', 'seg_perm') and dataset == 'KnownAnswer' and n != KNOWN_ANSWER_SEG_CLASSES:
            yield 'tasks_num_class', classes, (f'expected {KNOWN_ANSWER_SEG_CLASSES} classes for task {task!r} of '
                                               f'KnownAnswer (the NYU40 labels, permuted for seg_perm)')


def _rule_reference(opt: Mapping[str, Any], script: str):
    """Training scripts compute the validation score, which needs the original's reference table."""
    if script not in TRAIN_RETRAIN:
        return
    tasks, dataset = opt['tasks'], opt['dataload']['dataset']
    # KnownAnswer has a reference for every one of its tasks (evaluation.metrics), for any task set.
    if dataset == 'NYU_v2' and len(tasks) not in (2, 3):
        yield 'tasks', tasks, 'expected 2 or 3 tasks for NYU_v2 (the reference metrics of the score exist for those)'
    if dataset == 'CityScapes' and 'seg' in tasks and len(opt['tasks_num_class']) == len(tasks):
        classes = opt['tasks_num_class'][tasks.index('seg')]
        small_res = opt['dataload'].get('small_res', False)
        if (classes, small_res) not in ((7, True), (7, False), (19, False)):
            yield 'tasks_num_class', opt['tasks_num_class'], (
                f'seg with {classes} classes and dataload.small_res = {small_res!r} has no reference metrics for '
                f'the score; expected 7 classes (small_res true or false) or 19 classes (small_res false)')


def _rule_skip_layer(opt: Mapping[str, Any], script: str):
    if 'skip_layer' not in opt:
        return  # an AutoMTL config: no gated blocks
    blocks = backbone_blocks(opt['backbone'])
    if opt['skip_layer'] >= blocks:
        yield 'skip_layer', opt['skip_layer'], (f'expected an integer in [0, {blocks - 1}] ({opt["backbone"]} '
                                                f'has {blocks} blocks)')


def _rule_warm_up(opt: Mapping[str, Any], script: str):
    train = opt['train']
    if script == 'train_policy' and 'warm_up_iters' in train and train['warm_up_iters'] >= train['total_iters']:
        yield 'train.warm_up_iters', train['warm_up_iters'], (f'expected less than train.total_iters = '
                                                              f'{train["total_iters"]}')


_PAIRS = (('train.decay_lr_freq', 'train.decay_lr_rate'),
          ('train.policy_decay_lr_freq', 'train.policy_decay_lr_rate'),
          ('dataload.eval_h', 'dataload.eval_w'))


def _rule_pairs(opt: Mapping[str, Any], script: str):
    for first, second in _PAIRS:
        a, b = _lookup(opt, first), _lookup(opt, second)
        a_set, b_set = a not in (_MISSING, None), b not in (_MISSING, None)
        if a_set != b_set:
            given, absent = (first, second) if a_set else (second, first)
            yield absent, _lookup(opt, absent), f'expected it together with {given} = {_lookup(opt, given)!r} ' \
                                                f'(both or neither)'


def _rule_automtl(opt: Mapping[str, Any], script: str):
    if opt.get('architecture') != 'automtl':
        return
    section, train = opt.get('automtl') or {}, opt['train']
    pretrain = section.get('pretrain_iters', KEYS['automtl.pretrain_iters'].default)
    if script == 'train_policy' and pretrain >= train['total_iters']:
        yield 'automtl.pretrain_iters', pretrain, (f'expected less than train.total_iters = {train["total_iters"]} '
                                                   f'(total_iters = pre-train + policy-train iterations)')
    if opt.get('weighting', 'equal') != 'equal':
        yield 'weighting', opt['weighting'], ('expected equal with architecture automtl (the fixed lambdas; the '
                                              'other weighting methods are not wired into AutoMTL yet)')
    if opt.get('fix_BN'):
        yield 'fix_BN', True, 'expected false with architecture automtl (every task has its own BNs; not wired yet)'
    speed = opt.get('speed') or {}
    for name in ('amp', 'compile', 'channels_last'):
        if speed.get(name):
            yield f'speed.{name}', speed[name], 'not supported with architecture automtl yet; expected null/false'


def _rule_architecture(opt: Mapping[str, Any], script: str):
    architecture = opt.get('architecture', 'adashare')
    if architecture in ('adashare', 'automtl'):
        return
    if script == 'train_policy':
        yield 'architecture', architecture, ('expected adashare: baselines have no policy to learn; train them '
                                             'from scratch with re-train.py, then evaluate with test.py')
    if script == 're-train' and opt.get('retrain_from_pl'):
        yield 'retrain_from_pl', True, (f'expected False with architecture {architecture}: baselines are trained '
                                        f'from scratch (there is no policy-learning run to start from)')
    from models.baselines import ARCHITECTURES as BASELINES  # the baseline registry says which need segments
    if BASELINES[architecture].resnet_only and opt['backbone'] not in BACKBONE_BLOCKS:
        yield 'backbone', opt['backbone'], (f'architecture {architecture} reads the Deeplab-ResNet\'s segments and '
                                            f'blocks: expected one of {", ".join(BACKBONE_BLOCKS)} (multi_task and '
                                            f'single_task accept every backbone)')
    if architecture in MULTI_COLUMN and len(opt['tasks']) < 2:
        yield 'architecture', architecture, (f'needs at least 2 tasks (it mixes features between task '
                                             f'columns), got tasks = {opt["tasks"]!r}')


def _rule_weighting(opt: Mapping[str, Any], script: str):
    from envs.weighting import argument_problems
    for arg, value, problem in argument_problems(opt.get('weighting', 'equal'), opt.get('weighting_args')):
        yield (f'weighting_args.{arg}' if arg else 'weighting'), value, problem


def _rule_backbone_weights(opt: Mapping[str, Any], script: str):
    path = opt.get('backbone_weights')
    if isinstance(path, str) and path.strip() and not os.path.isfile(resolve_path(path)):
        yield 'backbone_weights', path, f'no such file ({resolve_path(path)}); expected a local state dict file'


RULES = (_rule_lengths, _rule_tasks, _rule_channels, _rule_reference, _rule_skip_layer, _rule_warm_up,
         _rule_pairs, _rule_architecture, _rule_automtl, _rule_weighting, _rule_backbone_weights)


def _rule_errors(opt: Mapping[str, Any], script: str, source: str) -> list[str]:
    errors = []
    for rule in RULES:
        for key, value, problem in rule(opt, script):
            shown = 'is missing' if value is _MISSING else f'= {show(value)}'
            errors.append(f'{source}: {key} {shown}: {problem}')
    return errors


def _raise(errors: list[str]) -> None:
    if errors:
        raise ConfigError('\n'.join(errors), errors)


def validate(raw: Any, script: str, source: str) -> dict:
    """Raise ConfigError listing every problem of the config `raw` for `script` (naming the `source` file).

    Returns a copy of `raw` in which empty sections (`quirks:` with nothing below) are empty dicts.
    """
    if script not in SCRIPTS:
        raise ValueError(f'unknown script {script!r}; expected one of {", ".join(SCRIPTS)}')
    if raw is None:
        raise ConfigError(f'{source}: the file is empty; expected a mapping of config keys (exp_name, seed, ...)')
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{source}: the document is {show(raw)}; expected a mapping of config keys '
                          f'(exp_name, seed, ...)')
    opt = _copy(raw)
    for section in SECTIONS:
        if section in opt and opt[section] is None:
            opt[section] = {}
    errors: list[str] = []
    _unknown_keys(opt, '', source, errors)
    errors += _missing_sections(opt, script, source)
    errors += _leaf_errors(opt, script, source)
    _raise(errors)
    _raise(_rule_errors(opt, script, source))
    return opt


# ----------------------------------------------------------------------------------------- defaults, paths
def resolve_path(value: str) -> str:
    """A relative path (or ~) resolved against the repository root, as an absolute normalised path."""
    value = os.path.expanduser(value)
    return os.path.normpath(value if os.path.isabs(value) else os.path.join(REPO_ROOT, value))


def _fill(opt: dict, source: str) -> dict:
    """Add the defaults of absent optional keys (in place) and resolve path keys against the repo root."""
    for section in SECTIONS:
        opt.setdefault(section, {})
    for key in SCHEMA:
        holder = opt if not key.section else _lookup(opt, key.section)
        if key.leaf not in holder and key.default is not REQUIRED:
            if isinstance(key.default, Derived):
                value = _lookup(opt, key.default.source)
                if value is not _MISSING:
                    holder[key.leaf] = value
            else:
                holder[key.leaf] = key.default
        if key.path and isinstance(holder.get(key.leaf), str):
            holder[key.leaf] = resolve_path(holder[key.leaf])
    opt['_source'] = os.path.abspath(source)
    return opt


def _copy(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


# ----------------------------------------------------------------------------------------- public API
def load_config(path: str, script: str) -> dict:
    """Read, validate (for `script`: train_policy, re-train or test), fill defaults and resolve paths.

    The result is a plain nested dict; `opt['_source']` holds the absolute path of the yaml.
    """
    if script not in SCRIPTS:
        raise ValueError(f'unknown script {script!r}; expected one of {", ".join(SCRIPTS)}')
    if not os.path.isabs(path) and not os.path.exists(path) and os.path.exists(os.path.join(REPO_ROOT, path)):
        # Scripts run from another folder still find the shipped yamls/... paths.
        path = os.path.join(REPO_ROOT, path)
    return _fill(validate(_read_yaml(path), script, path), path)


def check_exp_ids(opt: Mapping[str, Any], exp_ids: Sequence[int], path: str | None = None) -> list[int]:
    """Each --exp_ids entry must index the config's seed list; returns them as a list."""
    source = path or opt.get('_source', '<config>')
    seeds = list(opt['seed'])
    valid = f'0..{len(seeds) - 1} (seed = {show(seeds, 60)} has {len(seeds)} entries)'
    if not exp_ids:
        raise ConfigError(f'{source}: --exp_ids = []: expected at least one index into seed, {valid}')
    for exp_id in exp_ids:
        if not is_int(exp_id) or not 0 <= exp_id < len(seeds):
            raise ConfigError(f'{source}: --exp_ids {exp_id!r}: expected an index into seed, {valid}')
    return list(exp_ids)


def _flatten(node: Mapping[str, Any], prefix: str = '') -> list[tuple[str, Any]]:
    items = []
    for name, value in node.items():
        dotted = f'{prefix}{name}'
        if isinstance(value, Mapping) and value:
            items += _flatten(value, dotted + '.')
        else:
            items.append((dotted, value))
    return items


def format_options(opt: Mapping[str, Any]) -> str:
    """One `dotted.key: value` line per option (schema order, then anything else), for opt.txt."""
    order = {name: index for index, name in enumerate(KEYS)}
    items = _flatten(opt)
    items.sort(key=lambda item: (0 if item[0].startswith('_') else 1, order.get(item[0], len(order))))
    lines = [f'{name}: {value}' for name, value in items]
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------------------- resume checks
# Keys that cannot change a run's numbers: a resumed run may change them freely (docs/reliability.md).
# paths.checkpoint_dir too: the resume state was found under it, so the folder was moved, not swapped.
RESUME_FREE = ('train.print_freq', 'train.latest_freq', 'train.save_optimizer', 'train.auto_resume', 'dataload.num_workers',
               'dataload.pin_memory', 'dataload.prefetch_factor', 'paths.log_dir', 'paths.result_dir',
               'paths.checkpoint_dir',
               'test.which_iter', 'train.decay_temp_freq')
# Keys that may grow: the run just goes on longer.
RESUME_EXTENDABLE = ('train.total_iters', 'train.retrain_total_iters')
# Keys the other phase reads and this one does not.
RESUME_UNUSED = {
    'train_policy': ('train.retrain_total_iters', 'train.policy_iter', 'train.retrain_resume', 'retrain_from_pl'),
    're-train': ('train.warm_up_iters', 'train.weight_iter_alternate', 'train.alpha_iter_alternate', 'train.reg_w',
                 'train.reg_w_hamming', 'train.resume', 'train.policy_decay_lr_freq', 'train.policy_decay_lr_rate',
                 'is_sparse', 'is_sharing', 'is_curriculum', 'curriculum_speed', 'diff_sparsity_weights', 'policy',
                 'automtl.pretrain_iters', 'automtl.policy_iters', 'automtl.weight_iters', 'automtl.policy_lr',
                 'automtl.weight_lr', 'automtl.reg_lambda', 'automtl.reg_scale', 'automtl.reg_noise',
                 'automtl.init_temp', 'automtl.temp_decay', 'automtl.temp_update_iters', 'automtl.step_per_task',
                 'automtl.policy_lr_reset_freq'),
}


def recorded_config(opt: Mapping[str, Any]) -> dict:
    """The config as a resume state records it: plain values, without the `_source` bookkeeping keys."""
    return {k: _copy(v) for k, v in opt.items() if not str(k).startswith('_')}


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any], script: str) -> list[str]:
    """`key: old → new` for every key whose change would alter the numbers of a resumed `script` run."""
    before, after = dict(_flatten(recorded_config(old))), dict(_flatten(recorded_config(new)))
    skip = set(RESUME_FREE) | set(RESUME_UNUSED.get(script, ()))
    lines = []
    for key in list(before) + [k for k in after if k not in before]:
        a, b = before.get(key, _MISSING), after.get(key, _MISSING)
        if a == b or key in skip:
            continue
        if key in RESUME_EXTENDABLE and is_int(a) and is_int(b) and b > a:
            continue
        lines.append(f'{key}: {"(absent)" if a is _MISSING else show(a)} → {"(absent)" if b is _MISSING else show(b)}')
    return lines
