"""config/: the shipped yamls, every validation rule (exact messages), defaults, paths, docs."""
import copy
import glob
import os

import pytest
import yaml

from tools.config import main as config_main
import config as C
import config.load as config_load
from config import ConfigError, check_exp_ids, format_options, load_config, schema_markdown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = ['nyu_v2_2task', 'nyu_v2_3task', 'cityscapes_2task', 'taskonomy_5task']
PAPER_TEST = ['nyu_v2_2task_test', 'nyu_v2_3task_test', 'cityscapes_2task_test']
AUTOMTL = ['cityscapes_2task', 'nyu_v2_3task', 'taskonomy_5task']  # yamls/automtl/


def _yml(*parts: str) -> str:
    return os.path.join(ROOT, 'yamls', *parts) + '.yml'


def _raw(path: str) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


@pytest.fixture
def base() -> dict:
    """A complete config (the synthetic NYU 3-task yaml) to break one key at a time."""
    return copy.deepcopy(_raw(_yml('synthetic', 'nyu_v2_3task')))


def _write(tmp_path, cfg, name='x.yml') -> str:
    path = tmp_path / name
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def _error(tmp_path, cfg, script='train_policy') -> str:
    """The ConfigError text, with the temporary file path shown as x.yml."""
    path = _write(tmp_path, cfg)
    with pytest.raises(ConfigError) as info:
        load_config(path, script)
    message = str(info.value)
    assert message.startswith(path + ':'), message
    return message.replace(path, 'x.yml')


# ----------------------------------------------------------------------------------------- shipped yamls
def test_every_shipped_yaml_is_covered():
    # yamls/tables/ holds table specs of tools.tables, not configs.
    shipped = sorted(os.path.relpath(p, os.path.join(ROOT, 'yamls'))
                     for p in glob.glob(os.path.join(ROOT, 'yamls', '*', '*.yml'))
                     if not p.startswith(os.path.join(ROOT, 'yamls', 'tables', '')))
    expected = sorted([f'adashare/{n}.yml' for n in PAPER + PAPER_TEST] + [f'synthetic/{n}.yml' for n in PAPER]
                      + [f'automtl/{n}.yml' for n in AUTOMTL])  # validated in tests/test_automtl_pipeline.py
    assert shipped == expected


@pytest.mark.parametrize('name', PAPER)
@pytest.mark.parametrize('script', ['train_policy', 're-train'])
def test_paper_yamls_validate(name, script):
    opt = load_config(_yml('adashare', name), script)
    assert opt['_source'] == _yml('adashare', name)


@pytest.mark.parametrize('name', PAPER_TEST)
def test_test_yamls_validate_for_test_only(name, tmp_path):
    opt = load_config(_yml('adashare', name), 'test')
    assert opt['train']['policy_iter'] in ('best', 'latest')
    with pytest.raises(ConfigError, match='train.lr is missing: required by re-train'):
        load_config(_yml('adashare', name), 're-train')


@pytest.mark.parametrize('name', PAPER)
@pytest.mark.parametrize('script', C.SCRIPTS)
def test_synthetic_yamls_validate_for_every_script(name, script):
    load_config(_yml('synthetic', name), script)


# docs/original.md §1.6, the shipped paper configs.
PAPER_VALUES = {
    'nyu_v2_2task': dict(exp_name='nyu_v2_2task', backbone='ResNet18', tasks=['seg', 'sn'], classes=[40, 3],
                         lambdas=[1, 20], crop=321, iters=(16, 20000, 4000, 20000), lrs=(0.001, 0.001, 0.01),
                         regs=(0.05, 0.05), freqs=(100, 400), decay=(4000, 0.5), speed=3, alternate=(None, None),
                         seed=[88, 45, 50, 100, 44, 48, 2048, 2222, 9999]),
    'nyu_v2_3task': dict(exp_name='NYU_v2_3Task_pretrain', backbone='ResNet34', tasks=['seg', 'sn', 'depth'],
                         classes=[40, 3, 1], lambdas=[1, 20, 3], crop=321, iters=(16, 20000, 4000, 20000),
                         lrs=(0.001, 0.001, 0.01), regs=(0.001, 0.05), freqs=(100, 400), decay=(4000, 0.5),
                         speed=3, alternate=(None, None),
                         seed=[88, 45, 50, 100, 44, 48, 2048, 2222, 23, 12, 94, 88, 1000, 42, 77, 666]),
    'cityscapes_2task': dict(exp_name='cityscapes_2task', backbone='ResNet34', tasks=['seg', 'depth'],
                             classes=[19, 1], lambdas=[1, 20], crop=224, iters=(16, 20000, 4000, 20000),
                             lrs=(0.0001, 0.001, 0.01), regs=(0.01, 0.1), freqs=(100, 400), decay=(4000, 0.5),
                             speed=3, alternate=(None, None),
                             seed=[88, 45, 50, 100, 44, 48, 2048, 2222, 23, 12, 94, 88, 1000, 42, 77, 666]),
    'taskonomy_5task': dict(exp_name='taskonomy_5task', backbone='ResNet34',
                            tasks=['seg', 'sn', 'depth', 'keypoint', 'edge'], classes=[17, 3, 1, 1, 1],
                            lambdas=[1, 3, 2, 7, 7], crop=224, iters=(16, 100000, 20000, 30000),
                            lrs=(0.0001, 0.0001, 0.01), regs=(0.001, 0.005), freqs=(100, 1000),
                            decay=(12000, 0.3), speed=1, alternate=(400, 100),
                            seed=[88, 45, 50, 100, 44, 48, 2048, 2222]),
}


@pytest.mark.parametrize('name', PAPER)
def test_paper_yaml_values_are_the_originals(name):
    want = PAPER_VALUES[name]
    opt = load_config(_yml('adashare', name), 'train_policy')
    train = opt['train']
    assert (opt['exp_name'], opt['backbone'], opt['seed']) == (want['exp_name'], want['backbone'], want['seed'])
    assert (opt['tasks'], opt['tasks_num_class'], opt['lambdas']) == (want['tasks'], want['classes'],
                                                                      want['lambdas'])
    assert opt['dataload']['crop_h'] == opt['dataload']['crop_w'] == want['crop']
    assert (train['batch_size'], train['total_iters'], train['warm_up_iters'],
            train['retrain_total_iters']) == want['iters']
    assert (train['lr'], train['backbone_lr'], train['policy_lr']) == want['lrs']
    assert (train['reg_w'], train['reg_w_hamming']) == want['regs']
    assert (train['print_freq'], train['val_freq']) == want['freqs']
    assert (train['decay_lr_freq'], train['decay_lr_rate']) == want['decay']
    assert (train['weight_iter_alternate'], train['alpha_iter_alternate']) == want['alternate']
    assert opt['curriculum_speed'] == want['speed']
    assert (train['init_temp'], train['decay_temp']) == (5, 0.965)
    # Common to all four (docs/original.md §1.6); taskonomy ships resume False (the original's True
    # crashes a fresh run).
    assert opt['policy_model'] == 'task-specific' and opt['policy'] is True and opt['skip_layer'] == 0
    assert opt['is_sparse'] is opt['is_sharing'] is opt['is_curriculum'] is opt['diff_sparsity_weights'] is True
    assert opt['fix_BN'] is opt['retrain_from_pl'] is train['hard_sampling'] is False
    assert train['resume'] is train['retrain_resume'] is False
    assert (train['init_method'], train['policy_iter'], train['which_iter']) == ('equal', 'best', 'warmup')
    assert (train['decay_temp_freq'], opt['test']['which_iter'], opt['init_neg_logits']) == (100, 'best', None)
    assert opt['dataload']['dataroot'] == os.path.join(ROOT, 'data', name.split('_')[0] + ('_v2' if 'nyu' in name
                                                                                             else ''))
    for key in ('log_dir', 'result_dir', 'checkpoint_dir'):
        assert opt['paths'][key] == os.path.join(ROOT, 'experiments', key.split('_')[0] + 's')


def test_paper_yamls_keep_every_original_key():
    """The raw files carry the keys of the original yamls, unused ones included (nothing comes from defaults)."""
    for name in PAPER:
        raw = _raw(_yml('adashare', name))
        for key in ('init_neg_logits', 'train.decay_temp_freq', 'test.which_iter', 'train.policy_lr',
                    'train.which_iter', 'train.retrain_resume', 'retrain_from_pl', 'train.hard_sampling'):
            assert config_load._lookup(raw, key) is not config_load._MISSING, (name, key)
    assert _raw(_yml('adashare', 'cityscapes_2task'))['dataload']['small_res'] is False


@pytest.mark.parametrize('name, exp_name, seed, backbone, policy_iter, dataroot', [
    ('nyu_v2_2task_test', 'nyu_v2_2task_pretrain', [48], 'ResNet18', 'best', 'nyu_v2_samples'),
    ('nyu_v2_3task_test', 'NYU_v2_3Task_pretrain', [48], 'ResNet34', 'best', 'nyu_v2_samples'),
    ('cityscapes_2task_test', 'cityscapes_2task_pretrain', [12], 'ResNet34', 'latest', 'data/cityscapes'),
])
def test_test_yaml_values(name, exp_name, seed, backbone, policy_iter, dataroot):
    opt = load_config(_yml('adashare', name), 'test')
    assert (opt['exp_name'], opt['seed'], opt['backbone']) == (exp_name, seed, backbone)
    assert opt['train']['policy_iter'] == policy_iter and opt['train']['init_method'] == 'equal'
    assert opt['dataload']['dataroot'] == os.path.join(ROOT, dataroot)
    assert 'lambdas' not in opt and 'lr' not in opt['train']  # only what test.py needs
    assert 'retrain_total_iters' not in opt['train']  # no total_iters to derive it from


@pytest.mark.parametrize('name', PAPER)
def test_synthetic_yaml_is_the_paper_config_scaled_down(name):
    paper = load_config(_yml('adashare', name), 'train_policy')
    synth = load_config(_yml('synthetic', name), 'train_policy')
    assert (synth['backbone'], synth['head_channels']) == ('ResNet10', 32)
    # The 3-task one is also the CPU table's setting, sized down further (see its header).
    crop, batch = ((48, 4) if name == 'nyu_v2_3task' else (64, 8))
    assert (synth['dataload']['crop_h'], synth['dataload']['crop_w']) == (crop, crop)
    assert (synth['dataload']['eval_h'], synth['dataload']['eval_w']) == (96, 128)
    assert synth['dataload']['dataset'] == paper['dataload']['dataset']
    layout = os.path.basename(paper['dataload']['dataroot'])
    assert synth['dataload']['dataroot'] == os.path.join(ROOT, 'data', 'synthetic', layout)
    t = synth['train']
    assert (t['batch_size'], t['weight_iter_alternate'], t['alpha_iter_alternate']) == (batch, 8, 4)
    assert t['warm_up_iters'] < t['total_iters'] <= 1000
    assert (synth['curriculum_speed'], t['print_freq'], t['val_freq'], synth['quirks']['eval_iter']) == (1, 10, 20, 2)
    for key in ('tasks', 'tasks_num_class', 'lambdas', 'is_sparse', 'is_sharing', 'diff_sparsity_weights'):
        assert synth[key] == paper[key], key
    for key in ('reg_w', 'reg_w_hamming', 'lr', 'backbone_lr', 'policy_lr', 'init_temp', 'decay_temp'):
        assert t[key] == paper['train'][key], key
    assert synth['exp_name'] == 'synthetic_' + name


# ----------------------------------------------------------------------------------------- file-level errors
def test_missing_file(tmp_path):
    path = str(tmp_path / 'nope.yml')
    with pytest.raises(C.ConfigFileNotFoundError) as info:
        load_config(path, 'train_policy')
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ConfigError)
    assert str(info.value) == (f'{path}: config file not found (looked at {path}); expected a YAML file such as '
                               f'yamls/adashare/nyu_v2_3task.yml')


def test_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match='is not a file; expected a YAML config file'):
        load_config(str(tmp_path), 'train_policy')


def test_empty_and_non_mapping_documents(tmp_path):
    assert _error(tmp_path, '') == 'x.yml: the file is empty; expected a mapping of config keys (exp_name, seed, ...)'
    assert _error(tmp_path, '- a\n- b\n') == ("x.yml: the document is ['a', 'b']; expected a mapping of config "
                                              "keys (exp_name, seed, ...)")


def test_invalid_yaml(tmp_path):
    message = _error(tmp_path, 'train: [1, 2\n')
    assert message.startswith('x.yml: not valid YAML (') and message.endswith('expected a mapping of config keys')


def test_duplicate_key(tmp_path):
    assert _error(tmp_path, 'train:\n  lr: 0.1\n  lr: 0.2\n') == (
        "x.yml: line 3: key 'lr' appears twice (first on line 2); expected each key once per section")


def test_unknown_script_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match="unknown script 'train'; expected one of train_policy, re-train, test"):
        load_config(_yml('synthetic', 'nyu_v2_3task'), 'train')


# ----------------------------------------------------------------------------------------- unknown keys
def test_typo_suggests_the_closest_key(tmp_path, base):
    base['train']['lrr'] = base['train'].pop('lr')
    assert _error(tmp_path, base) == (
        'x.yml: train.lrr = 0.001: unknown key, did you mean train.lr?\n'
        'x.yml: train.lr is missing: required by train_policy; expected a number > 0')


@pytest.mark.parametrize('where, name, value, suggestion', [
    ('train', 'crop_h', 64, 'dataload.crop_h'),          # a key of another section
    (None, 'init_method', 'equal', 'train.init_method'),  # top level instead of train
    ('quirks', 'decode_normal', True, 'quirks.decode_normals'),
    ('dataload', 'datset', 'NYU_v2', 'dataload.dataset'),
    (None, 'skiplayer', 0, 'skip_layer'),
])
def test_unknown_key_suggestions_at_every_level(tmp_path, base, where, name, value, suggestion):
    (base if where is None else base[where])[name] = value
    dotted = name if where is None else f'{where}.{name}'
    assert _error(tmp_path, base) == f'x.yml: {dotted} = {value!r}: unknown key, did you mean {suggestion}?'


def test_unknown_key_without_suggestion_lists_the_section(tmp_path, base):
    base['paths']['zzz'] = 'x'
    assert _error(tmp_path, base) == ("x.yml: paths.zzz = 'x': unknown key; expected one of the keys in paths: "
                                      "checkpoint_dir, log_dir, result_dir")


def test_misspelt_section(tmp_path, base):
    base['trian'] = base.pop('train')
    lines = _error(tmp_path, base).split('\n')
    assert lines[0].startswith("x.yml: trian = {'batch_size': 4, ") and lines[0].endswith(
        '...: unknown key, did you mean train?')
    assert lines[1].startswith('x.yml: train is missing: required by train_policy; expected a section with keys '
                               'batch_size, total_iters, warm_up_iters, lr, backbone_lr, ')
    assert len(lines) == 2


def test_section_must_be_a_mapping(tmp_path, base):
    base['paths'] = 'experiments'
    assert _error(tmp_path, base) == ("x.yml: paths = 'experiments': expected a section (a mapping) with keys "
                                      "from: log_dir, result_dir, checkpoint_dir")


def test_empty_section_is_accepted(tmp_path, base):
    base['quirks'] = None
    opt = load_config(_write(tmp_path, base), 'train_policy')
    assert opt['quirks']['eval_iter'] == 10


def test_underscore_metadata_key_is_refused_in_files(tmp_path, base):
    base['_source'] = 'x'
    assert _error(tmp_path, base).startswith("x.yml: _source = 'x': unknown key; expected one of the keys at the "
                                             "top level: architecture, automtl, backbone, backbone_weights, baseline, curriculum_speed, dataload, ")


# ----------------------------------------------------------------------------------------- required keys
def test_required_keys_depend_on_the_script(tmp_path, base):
    del base['policy'], base['train']['warm_up_iters'], base['retrain_from_pl'], base['train']['policy_iter']
    assert _error(tmp_path, base, 'train_policy') == (
        'x.yml: policy is missing: required by train_policy; expected true or false\n'
        'x.yml: train.warm_up_iters is missing: required by train_policy; expected an integer >= 1')
    assert _error(tmp_path, base, 're-train') == (
        'x.yml: retrain_from_pl is missing: required by re-train; expected true or false\n'
        'x.yml: train.policy_iter is missing: required by re-train; expected a non-empty name such as best or '
        'latest (a string without / or \\)')


def test_missing_section(tmp_path, base):
    del base['paths']
    assert _error(tmp_path, base, 'test') == ('x.yml: paths is missing: required by test; expected a section with '
                                              'keys log_dir, result_dir, checkpoint_dir')


def test_reg_w_required_only_if_sparse(tmp_path, base):
    del base['train']['reg_w']
    assert _error(tmp_path, base) == ('x.yml: train.reg_w is missing: required by train_policy when is_sparse is '
                                      'True; expected a number >= 0')
    base['is_sparse'] = False
    assert load_config(_write(tmp_path, base), 'train_policy')['train']['reg_w'] is None


def test_reg_w_hamming_required_only_if_sharing(tmp_path, base):
    base['train']['reg_w_hamming'] = None
    assert _error(tmp_path, base) == ('x.yml: train.reg_w_hamming = None: required by train_policy when is_sharing '
                                      'is True; expected a number >= 0')
    base['is_sharing'] = False
    load_config(_write(tmp_path, base), 'train_policy')


def test_which_iter_required_if_resuming(tmp_path, base):
    del base['train']['which_iter']
    load_config(_write(tmp_path, base), 'train_policy')
    base['train']['resume'] = True
    assert _error(tmp_path, base, 'train_policy') == (
        "x.yml: train.which_iter is missing: required by train_policy when train.resume is True; expected a "
        "non-empty name such as warmup (a string without / or \\)")
    load_config(_write(tmp_path, base), 're-train')  # re-train reads retrain_resume, not resume
    base['train']['retrain_resume'] = True
    assert _error(tmp_path, base, 're-train').startswith(
        'x.yml: train.which_iter is missing: required by re-train when train.retrain_resume is True; expected')


def test_all_chosen_needs_init_neg_logits_and_policy_lr(tmp_path, base):
    base['train']['init_method'] = 'all_chosen'
    base['train']['policy_lr'] = None
    assert _error(tmp_path, base) == (
        "x.yml: init_neg_logits = None: required by train_policy when train.init_method is 'all_chosen'; "
        "expected a number\n"
        "x.yml: train.policy_lr = None: required by train_policy when train.init_method is 'all_chosen'; "
        "expected a number > 0")
    base['init_neg_logits'], base['train']['policy_lr'] = -10, 0.01
    assert load_config(_write(tmp_path, base), 'train_policy')['init_neg_logits'] == -10


def test_small_res_required_for_cityscapes_only(tmp_path):
    raw = _raw(_yml('adashare', 'cityscapes_2task_test'))
    del raw['dataload']['small_res']
    assert _error(tmp_path, raw, 'test') == ("x.yml: dataload.small_res is missing: required by test when "
                                             "dataload.dataset is 'CityScapes'; expected true or false")
    nyu = _raw(_yml('adashare', 'nyu_v2_2task_test'))
    assert load_config(_write(tmp_path, nyu), 'test')['dataload']['small_res'] is False


# ----------------------------------------------------------------------------------------- types and ranges
@pytest.mark.parametrize('key, value, expected', [
    ('train.decay_temp', 1.5, 'expected a number in (0, 1]'),
    ('train.decay_temp', 0, 'expected a number in (0, 1]'),
    ('train.init_temp', 0, 'expected a number > 0'),
    ('train.lr', -0.1, 'expected a number > 0'),
    ('train.lr', '0.001', 'expected a number > 0, not a string (remove the quotes)'),
    ('train.lr', True, 'expected a number > 0'),
    ('train.reg_w', -1, 'expected a number >= 0 or null'),
    ('train.batch_size', 0, 'expected an integer >= 1'),
    ('train.batch_size', True, 'expected an integer >= 1'),  # bool is not int
    ('train.batch_size', 8.0, 'expected an integer >= 1'),   # float is not int
    ('dataload.crop_h', 0, 'expected an integer >= 1'),
    ('dataload.crop_w', -64, 'expected an integer >= 1'),
    ('dataload.num_workers', -1, 'expected an integer >= 0'),
    ('dataload.eval_h', 0, 'expected an integer >= 1 or null'),
    ('skip_layer', -1, 'expected an integer >= 0'),
    ('head_channels', 0, 'expected an integer >= 1'),
    ('curriculum_speed', 0, 'expected an integer >= 1'),
    ('policy', 'yes', 'expected true or false'),
    ('is_sparse', 1, 'expected true or false'),
    ('quirks.eval_iter', -2, 'expected an integer >= -1'),
    ('quirks.decode_normals', None, 'expected true or false'),
    ('quirks.val_split', 'vall', "expected one of 'train', 'train1', 'train2', 'val', 'test', 'test_small' or null"),
    ('train.policy_iter', 4000, 'expected a non-empty name such as best or latest (a string without / or \\)'),
    ('train.policy_iter', '../best', 'expected a non-empty name such as best or latest (a string without / or \\)'),
    ('exp_name', 'a/b', 'expected a non-empty name (a string without / or \\)'),
    ('exp_name', '', 'expected a non-empty name (a string without / or \\)'),
    ('paths.log_dir', '', 'expected a non-empty path string'),
    ('dataload.dataset', 'NYU', "expected one of 'NYU_v2', 'CityScapes', 'Taskonomy', 'KnownAnswer'"),
    ('backbone', 'ResNet50', "expected a backbone of the registry: ResNet10, ResNet18, ResNet34, ResNet101, "
                             "WRN-<depth>-<width> (e.g. WRN-16-8), MobileNetV2[-<width multiplier>], "
                             "tv:resnet18|34|50|101"),
    ('train.init_method', 'zeros', "expected one of 'equal', 'random', 'all_chosen'"),
    ('policy_model', 'instance-specific', "not supported yet (instance-specific policies are not implemented); "
                                          "expected one of 'task-specific'"),
    ('policy_model', 'blockwise', "expected one of 'task-specific'"),
    ('seed', 48, 'expected a non-empty list, each item an integer in [0, 4294967295]'),
    ('seed', [], 'expected a non-empty list, each item an integer in [0, 4294967295]'),
    ('seed', [1, -2], 'expected a non-empty list, each item an integer in [0, 4294967295] (item 1 = -2 is not)'),
    ('tasks', ['seg', 'normal', 'depth'], "expected a non-empty list, each item one of 'seg', 'sn', 'depth', "
                                          "'keypoint', 'edge', 'seg_perm', 'texture', 'blur', 'noise' "
                                          "(item 1 = 'normal' is not)"),
    ('lambdas', [1, 'a', 3], "expected a non-empty list, each item a number >= 0 (item 1 = 'a' is not)"),
    ('tasks_num_class', [40, 0, 1], 'expected a non-empty list, each item an integer >= 1 (item 1 = 0 is not)'),
])
def test_type_and_range_errors(tmp_path, base, key, value, expected):
    section, _, leaf = key.rpartition('.')
    (base[section] if section else base)[leaf] = value
    assert _error(tmp_path, base) == f'x.yml: {key} = {value!r}: {expected}'


def test_the_briefs_example_message(tmp_path, base):
    base['train']['decay_temp'] = 1.5
    path = _write(tmp_path, base, 'x.yml')
    with pytest.raises(ConfigError) as info:
        load_config(path, 'train_policy')
    assert str(info.value) == f'{path}: train.decay_temp = 1.5: expected a number in (0, 1]'
    assert info.value.errors == [str(info.value)]


def test_int_accepted_where_float_expected_and_exponent_floats(tmp_path, base):
    text = yaml.safe_dump(base, sort_keys=False).replace('  lr: 0.001', '  lr: 1e-3')
    assert '  lr: 1e-3' in text
    opt = load_config(_write(tmp_path, text), 'train_policy')
    assert opt['train']['lr'] == 0.001 and isinstance(opt['train']['lr'], float)  # 1e-3 is a float here
    assert opt['train']['init_temp'] == 5 and opt['lambdas'] == [1, 20, 3]


def test_all_errors_are_reported_together(tmp_path, base):
    base['train']['batch_size'] = 0
    base['backbone'] = 'ResNet50'
    del base['exp_name']
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, base), 'train_policy')
    assert len(info.value.errors) == 3
    assert [line.split(': ')[1] for line in info.value.errors] == [
        'exp_name is missing', "backbone = 'ResNet50'", 'train.batch_size = 0']


# ----------------------------------------------------------------------------------------- cross-key rules
def test_lengths_must_match_tasks(tmp_path, base):
    base['lambdas'] = [1, 20]
    base['tasks_num_class'] = [40, 3, 1, 1]
    assert _error(tmp_path, base) == (
        "x.yml: tasks_num_class = [40, 3, 1, 1]: expected 3 values, one per task of tasks = ['seg', 'sn', 'depth']\n"
        "x.yml: lambdas = [1, 20]: expected 3 values, one per task of tasks = ['seg', 'sn', 'depth']")


def test_duplicate_tasks(tmp_path, base):
    base['tasks'] = ['seg', 'sn', 'seg']
    base['tasks_num_class'] = [40, 3, 40]
    assert _error(tmp_path, base) == "x.yml: tasks = ['seg', 'sn', 'seg']: expected each task at most once " \
                                     "('seg' repeated)"


def test_keypoint_and_edge_only_with_taskonomy(tmp_path, base):
    base['tasks'], base['tasks_num_class'] = ['seg', 'keypoint', 'edge'], [40, 1, 1]
    assert _error(tmp_path, base) == ("x.yml: tasks = ['seg', 'keypoint', 'edge']: 'keypoint', 'edge' not "
                                      "available with dataload.dataset = 'NYU_v2'; expected tasks from seg, sn, depth")


def test_no_normals_in_cityscapes(tmp_path):
    raw = _raw(_yml('synthetic', 'cityscapes_2task'))
    raw['tasks'], raw['tasks_num_class'] = ['seg', 'sn'], [19, 3]
    assert _error(tmp_path, raw) == ("x.yml: tasks = ['seg', 'sn']: 'sn' not available with dataload.dataset = "
                                     "'CityScapes'; expected tasks from seg, depth")


def test_task_channels(tmp_path, base):
    base['tasks_num_class'] = [40, 1, 1]
    assert _error(tmp_path, base) == "x.yml: tasks_num_class = [40, 1, 1]: expected 3 for task 'sn'"


def test_seg_classes_per_dataset(tmp_path):
    city = _raw(_yml('synthetic', 'cityscapes_2task'))
    city['tasks_num_class'] = [20, 1]
    assert _error(tmp_path, city, 'test') == ('x.yml: tasks_num_class = [20, 1]: expected 2, 7 or 19 seg classes '
                                              'for CityScapes (label2/label7/label19)')
    taskonomy = _raw(_yml('synthetic', 'taskonomy_5task'))
    taskonomy['tasks_num_class'][0] = 18
    assert _error(tmp_path, taskonomy, 'test') == ('x.yml: tasks_num_class = [18, 3, 1, 1, 1]: expected 17 seg '
                                                   'classes for Taskonomy (semseg_prior_factor.npy)')


def test_training_needs_a_reference_table(tmp_path, base):
    base['tasks'], base['tasks_num_class'], base['lambdas'] = ['seg'], [40], [1]
    assert _error(tmp_path, base) == ("x.yml: tasks = ['seg']: expected 2 or 3 tasks for NYU_v2 (the reference "
                                      "metrics of the score exist for those)")
    load_config(_write(tmp_path, base), 'test')  # test.py reports metrics without a score
    city = _raw(_yml('synthetic', 'cityscapes_2task'))
    city['dataload']['small_res'] = True
    assert _error(tmp_path, city, 're-train') == (
        'x.yml: tasks_num_class = [19, 1]: seg with 19 classes and dataload.small_res = True has no reference '
        'metrics for the score; expected 7 classes (small_res true or false) or 19 classes (small_res false)')
    city['tasks_num_class'] = [7, 1]
    load_config(_write(tmp_path, city), 're-train')


@pytest.mark.parametrize('backbone, blocks', [('ResNet10', 4), ('ResNet18', 8), ('ResNet34', 16), ('ResNet101', 33)])
def test_skip_layer_below_block_count(tmp_path, base, backbone, blocks):
    base['backbone'], base['skip_layer'] = backbone, blocks - 1
    load_config(_write(tmp_path, base), 'train_policy')
    base['skip_layer'] = blocks
    assert _error(tmp_path, base) == (f'x.yml: skip_layer = {blocks}: expected an integer in [0, {blocks - 1}] '
                                      f'({backbone} has {blocks} blocks)')


def test_warm_up_shorter_than_total(tmp_path, base):
    base['train']['warm_up_iters'] = 300
    assert _error(tmp_path, base) == 'x.yml: train.warm_up_iters = 300: expected less than train.total_iters = 300'
    load_config(_write(tmp_path, base), 're-train')  # re-train has no warm-up


@pytest.mark.parametrize('present, absent, value', [
    ('train.decay_lr_freq', 'train.decay_lr_rate', 60),
    ('train.decay_lr_rate', 'train.decay_lr_freq', 0.5),
    ('train.policy_decay_lr_freq', 'train.policy_decay_lr_rate', 100),
    ('dataload.eval_h', 'dataload.eval_w', 96),
])
def test_both_or_neither(tmp_path, base, present, absent, value):
    for key in (present, absent):
        section, _, leaf = key.rpartition('.')
        base[section].pop(leaf, None)
    section, _, leaf = present.rpartition('.')
    base[section][leaf] = value
    assert _error(tmp_path, base) == (f'x.yml: {absent} is missing: expected it together with {present} = '
                                      f'{value!r} (both or neither)')


def test_neither_of_a_pair_is_fine(tmp_path, base):
    for key in ('decay_lr_freq', 'decay_lr_rate'):
        del base['train'][key]
    opt = load_config(_write(tmp_path, base), 'train_policy')
    assert opt['train']['decay_lr_freq'] is None and opt['train']['decay_lr_rate'] is None


def test_unused_keys_are_accepted(tmp_path, base):
    base['train']['decay_temp_freq'] = 100
    base['test'] = {'which_iter': 'best'}
    opt = load_config(_write(tmp_path, base), 'train_policy')
    assert opt['train']['decay_temp_freq'] == 100 and opt['test']['which_iter'] == 'best'
    assert C.KEYS['train.decay_temp_freq'].unused and C.KEYS['test.which_iter'].unused


# ----------------------------------------------------------------------------------------- --exp_ids
def test_check_exp_ids(tmp_path):
    opt = load_config(_yml('adashare', 'nyu_v2_2task'), 're-train')
    assert check_exp_ids(opt, [0, 8], 'y.yml') == [0, 8]
    with pytest.raises(ConfigError) as info:
        check_exp_ids(opt, [0, 9], 'y.yml')
    assert str(info.value) == ('y.yml: --exp_ids 9: expected an index into seed, 0..8 (seed = [88, 45, 50, 100, '
                               '44, 48, 2048, 2222, 9999] has 9 entries)')
    with pytest.raises(ConfigError, match=r'--exp_ids -1: expected an index into seed, 0\.\.8'):
        check_exp_ids(opt, [-1], 'y.yml')
    with pytest.raises(ConfigError, match=r'y.yml: --exp_ids = \[\]: expected at least one index into seed'):
        check_exp_ids(opt, [], 'y.yml')
    test_opt = load_config(_yml('adashare', 'nyu_v2_2task_test'), 'test')
    with pytest.raises(ConfigError) as info:
        check_exp_ids(test_opt, [1])
    assert str(info.value) == (f"{_yml('adashare', 'nyu_v2_2task_test')}: --exp_ids 1: expected an index into "
                               f"seed, 0..0 (seed = [48] has 1 entries)")


# ----------------------------------------------------------------------------------------- defaults, paths
def test_defaults_are_filled(tmp_path, base):
    for key in ('head_channels', 'init_neg_logits', 'quirks'):
        base.pop(key, None)
    for key in ('eval_h', 'eval_w', 'num_workers'):
        base['dataload'].pop(key)
    for key in ('weight_iter_alternate', 'alpha_iter_alternate', 'policy_lr', 'retrain_total_iters'):
        base['train'].pop(key)
    opt = load_config(_write(tmp_path, base), 'train_policy')
    assert opt['head_channels'] == 1024 and opt['init_neg_logits'] is None
    assert opt['architecture'] == 'adashare'
    assert opt['baseline'] == {'sluice_orthogonality': 0.01, 'fusion_lr_mult': 1.0}
    assert (opt['dataload']['eval_h'], opt['dataload']['eval_w'], opt['dataload']['num_workers']) == (None, None, 2)
    assert opt['dataload']['small_res'] is False
    assert opt['train']['retrain_total_iters'] == opt['train']['total_iters'] == 300
    assert opt['train']['weight_iter_alternate'] is None and opt['train']['alpha_iter_alternate'] is None
    assert opt['train']['policy_lr'] is None and opt['test'] == {'which_iter': None}
    assert opt['quirks'] == {'decode_normals': False, 'eval_iter': 10, 'val_split': None, 'miou_all_classes': False,
                             'pixel_pooled': False, 'bilinear_resize': False, 'sigma_positive_only': False,
                             'weight_lr_schedule_after_warmup': False, 'true_block_count': False,
                             'true_skip': False, 'paper_sparsity': False, 'paper_sharing_weights': False}
    base['train']['retrain_total_iters'] = 50
    assert load_config(_write(tmp_path, base), 'train_policy')['train']['retrain_total_iters'] == 50


def test_relative_paths_resolve_against_the_repo_root(tmp_path, base, monkeypatch):
    base['paths']['log_dir'] = 'a/../logs'
    base['paths']['result_dir'] = str(tmp_path / 'results')
    base['paths']['checkpoint_dir'] = '~/ckpt'
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the working directory does not matter
    opt = load_config(_write(tmp_path, base), 'train_policy')
    assert opt['paths'] == {'log_dir': os.path.join(ROOT, 'logs'), 'result_dir': str(tmp_path / 'results'),
                            'checkpoint_dir': str(tmp_path / 'ckpt')}
    assert opt['dataload']['dataroot'] == os.path.join(ROOT, 'data', 'synthetic', 'nyu_v2')
    assert opt['_source'] == str(tmp_path / 'x.yml')
    relative = load_config('x.yml', 'train_policy')  # a relative config path is read from the cwd
    assert relative['_source'] == str(tmp_path / 'x.yml')


def test_schema_defaults_pass_their_own_checks():
    for key in C.SCHEMA:
        assert key.meaning, key.name
        if key.default is not C.REQUIRED and not isinstance(key.default, C.Derived):
            assert key.check.accepts(key.default), key.name
        assert (key.section == 'quirks') == bool(key.modules), key.name
        assert key.default is not C.REQUIRED or key.required_by, key.name


# ----------------------------------------------------------------------------------------- output and docs
def test_format_options(tmp_path):
    opt = load_config(_yml('adashare', 'nyu_v2_2task'), 'train_policy')
    text = format_options(opt)
    lines = text.splitlines()
    assert text.endswith('\n') and lines[0] == f"_source: {_yml('adashare', 'nyu_v2_2task')}"
    assert lines[1:4] == ['exp_name: nyu_v2_2task', 'seed: [88, 45, 50, 100, 44, 48, 2048, 2222, 9999]',
                          'backbone: ResNet18']
    for line in ('train.lr: 0.001', "tasks: ['seg', 'sn']", 'quirks.eval_iter: 10',
                 f"paths.log_dir: {os.path.join(ROOT, 'experiments', 'logs')}", 'init_neg_logits: None', 'train.retrain_total_iters: 20000'):
        assert line in lines, line
    assert len(lines) == len(C.KEYS) + 1  # every key once, plus _source
    opt['train']['weight_iter_alternate'] = 12  # written back by the script: still one line
    opt['extra'] = {'note': 'x'}
    lines = format_options(opt).splitlines()
    assert 'train.weight_iter_alternate: 12' in lines and lines[-1] == 'extra.note: x'


def test_schema_markdown_lists_every_key():
    text = schema_markdown()
    for key in C.SCHEMA:
        assert f'| `{key.name}` |' in text, key.name
    quirk_table = text.split('Quirk switches')[1]
    assert ('| `quirks.decode_normals` | true or false | `false` | `dataloaders`, `envs/losses`, `utils/metrics` |'
            in quirk_table)
    assert '| `train.reg_w` | a number >= 0 or null | `null` | train_policy if `is_sparse` is True |' in text
    assert '| `train.retrain_total_iters` | an integer >= 1 | `train.total_iters` | — |' in text
    assert '| `exp_name` | a non-empty name (a string without / or \\\\) | — | all scripts |' in text
    assert '**Unused**' in text.split('`train.decay_temp_freq`')[1].split('\n')[0]


def test_markdown_command_line(capsys):
    assert config_main(['--markdown']) == 0
    assert capsys.readouterr().out == schema_markdown()


def test_check_command_line(capsys, tmp_path, base):
    assert config_main([_yml('adashare', 'nyu_v2_3task_test'), '--script', 'test']) == 0
    assert 'exp_name: NYU_v2_3Task_pretrain' in capsys.readouterr().out
    base['train']['decay_temp'] = 2
    assert config_main([_write(tmp_path, base), '--script', 'train_policy']) == 2
    assert 'train.decay_temp = 2: expected a number in (0, 1]' in capsys.readouterr().err
