"""The CPU table command end to end, in its --quick form (a few iterations per row): every baseline,
AdaShare and the five ablations are trained, tested and rendered into one table."""
import json
import os

import pytest
import yaml

from _pipeline import ROOT

SPEC = os.path.join(ROOT, 'yamls', 'tables', 'synthetic_table3.yml')


@pytest.fixture(scope='module')
def data_96x128(tmp_path_factory):
    from dataloaders.synthetic import generate_dataset
    root = tmp_path_factory.mktemp('nyu96')
    generate_dataset('nyu_v2', str(root), num_train=10, num_test=3, height=96, width=128, seed=5, progress=False)
    return root


@pytest.mark.slow
def test_quick_cpu_table_trains_tests_and_renders_every_row(tmp_path, data_96x128, capsys):
    from tools import cpu_table
    out = tmp_path / 'table'
    assert cpu_table.main(['--quick', '--seeds', '1', '--out', str(out), '--dataroot', str(data_96x128)]) == 0
    printed = capsys.readouterr().out
    with open(SPEC) as f:
        methods = [row['method'] for row in yaml.safe_load(f)['rows']]
    assert len(methods) == 12
    # Every row has its test JSON, with the architecture its config names.
    spec = yaml.safe_load((out / 'synthetic_table3.yml').read_text())
    from config import load_config
    for row in spec['rows']:
        opt = load_config(row['config'], 'test')
        path = os.path.join(opt['paths']['result_dir'], opt['exp_name'], 'test_metrics_exp000.json')
        with open(path) as f:
            result = json.load(f)
        assert result['architecture'] == opt['architecture'], row['method']
        assert str(out) in path, 'quick runs write under --out only'
    # Random #1 / #2 retrained the policies tools.random_policies wrote, not a sampled one.
    assert (out / 'logs').is_dir() and any('random_policies' in name for name in os.listdir(out / 'logs'))
    markdown = [name for name in os.listdir(out) if name.endswith('.md')]
    assert markdown, os.listdir(out)
    text = (out / markdown[0]).read_text()
    for method in methods:
        assert method in text, method
    assert 'done in' in printed

    # A second run skips every finished step and renders again.
    assert cpu_table.main(['--quick', '--seeds', '1', '--out', str(out), '--dataroot', str(data_96x128)]) == 0
    again = capsys.readouterr().out
    assert again.count('already done, skipped') == 30  # 4 policy runs, 2 random, 12 x (retrain + test)


def test_bad_arguments_are_one_line(tmp_path):
    from tools import cpu_table
    with pytest.raises(SystemExit):
        cpu_table.main(['--seeds', '0'])
    with pytest.raises(FileNotFoundError, match='table spec not found'):
        cpu_table.main(['--spec', str(tmp_path / 'nope.yml'), '--out', str(tmp_path)])
