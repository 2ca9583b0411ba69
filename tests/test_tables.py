"""reporting/tables.py and tools/tables.py: paper tables from fixture result files, against golden files.

The fixture (tests/data/tables/): NYU v2 2-task configs whose results live in tests/data/tables/results;
Single-Task and Multi-Task with 2 seeds, AdaShare with exp_ids [0, 1, 2] of which 2 is missing and 1 is
marked incomplete, MTAN with no result, Sluice with no config. Goldens: tests/data/tables/golden/;
regenerate them deliberately with `UPDATE_GOLDEN=1 python -m pytest tests/test_tables.py`.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tools.tables import main
from reporting import tables as T
from evaluation.metrics import paper_metrics
from evaluation.summary import multitask_delta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, 'tests', 'data', 'tables')
SPEC = os.path.join(DATA, 'fixture.yml')
GOLDEN = os.path.join(DATA, 'golden')


def _results(exp_name: str, exp_id: int) -> dict:
    with open(os.path.join(DATA, 'results', exp_name, f'test_metrics_exp{exp_id:03d}.json')) as handle:
        return json.load(handle)


@pytest.fixture(scope='module')
def table():
    return T.build_table(T.load_spec(SPEC))


@pytest.mark.parametrize('ext,render', [('md', T.render_markdown), ('tex', T.render_latex), ('csv', T.render_csv)])
def test_renderers_match_the_golden_files(table, ext, render):
    text = render(table)
    path = os.path.join(GOLDEN, f'fixture.{ext}')
    if os.environ.get('UPDATE_GOLDEN'):
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, 'w', encoding='utf-8', newline='') as handle:
            handle.write(text)
    with open(path, encoding='utf-8', newline='') as handle:
        assert text == handle.read()


def _md_row(text: str, block: int, method: str) -> list[str]:
    """The cells of `method`'s row in the block-th Markdown table (0 = best of seeds, 1 = mean, 2 = paper)."""
    section = text.split('\n## ')[block + 1]
    line = next(l for l in section.splitlines() if l.startswith(f'| {method} '))
    return [cell.strip() for cell in line.strip('|').split('|')]


def test_columns_are_the_paper_metrics_with_arrows(table):
    assert [(c.task, c.key, c.lower) for c in table.columns] == [
        ('seg', k, lower) for k, lower in paper_metrics('NYU_v2', 'seg')] + [
        ('sn', k, lower) for k, lower in paper_metrics('NYU_v2', 'sn')]
    assert table.headers == ['# Params ↓', 'mIoU ↑', 'Pixel Acc ↑', 'Mean ↓', 'Median ↓', '11.25° ↑', '22.5° ↑',
                             '30° ↑', 'Δ_seg ↑', 'Δ_sn ↑', 'Δ_T ↑']


def test_best_of_seeds_values_in_paper_units_and_ranks(table):
    md = T.render_markdown(table)
    # Best run by val_score: Single-Task exp0 (2.0 > 1.5), Multi-Task exp1 (2.3 > 2.1), AdaShare exp0 (2.5 > 2.4).
    assert [line.run for line in table.best] == ['exp0', 'exp1', '–', '–', 'exp0']
    ada = _md_row(md, 0, 'AdaShare')
    # mIoU 0.30 -> 30.00 % (higher is better: best); Median 20 is the worst of 16, 17, 20 (lower is better).
    assert ada[:8] == ['AdaShare', 'exp0', '**1.00**', '**30.00**', '**55.00**', '**18.00**', '20.00', '**44.00**']
    single = _md_row(md, 0, 'Single-Task')
    assert single[3] == '<u>25.00</u>'  # mIoU 25 is second to 30 (Multi-Task: 24)
    assert single[6] == '**16.00**'  # Median: lowest is best
    multi = _md_row(md, 0, 'Multi-Task')
    assert multi[2] == '**1.00**' and single[2] == '<u>2.00</u>'  # # Params: lower is better, ties share bold
    assert multi[6] == '<u>17.00</u>'
    tex = T.render_latex(table)
    assert 'AdaShare & exp0 & \\textbf{1.00} & \\textbf{30.00} & \\textbf{55.00} & \\textbf{18.00} & 20.00' in tex
    assert 'Single-Task & exp0 & \\underline{2.00} & \\underline{25.00} & 50.00' in tex


def test_delta_against_the_single_task_row_by_hand(table):
    # AdaShare exp0 vs Single-Task exp0 (the best runs):
    #   seg: (30-25)/25 = +20 %, (55-50)/50 = +10 %                         -> Δ_seg = 15
    #   sn:  Mean -(18-20)/20 = +10, Median -(20-16)/16 = -25, 11.25° (44-40)/40 = +10,
    #        22.5° (45-50)/50 = -10, 30° (84-80)/80 = +5                    -> Δ_sn = -10/5 = -2
    #   Δ_T = (15 - 2) / 2 = 6.5. (seg err 2.0 vs 1.0 and Angle 45 45 vs 90 are in the JSONs and ignored.)
    # Multi-Task exp1: seg (-4 + 4)/2 = 0; sn (-5 - 6.25 - 5 - 4 - 2.5)/5 = -4.55; Δ_T = -2.275.
    ada = table.best[4].cells[-3:]
    assert [c.value for c in ada] == [pytest.approx(15.0), pytest.approx(-2.0), pytest.approx(6.5)]
    multi = table.best[1].cells[-3:]
    assert [c.value for c in multi] == [pytest.approx(0.0, abs=1e-12), pytest.approx(-4.55), pytest.approx(-2.275)]
    assert [c.value for c in table.best[0].cells[-3:]] == [0.0, 0.0, 0.0]
    assert multitask_delta(_results('tables_adashare', 0), _results('tables_single_task', 0), 'NYU_v2')['all'] \
        == pytest.approx(6.5)
    md = T.render_markdown(table)
    assert _md_row(md, 0, 'AdaShare')[-3:] == ['**15.00**', '<u>-2.00</u>', '**6.50**']
    assert 'Δ_t = (1/|M_t|) Σ_j (−1)^{l_j} (M_j − M_ref,j) / M_ref,j × 100 %' in md
    assert 'the reference is the Single-Task row of the same block' in md
    assert "the paper's for NYU_v2): seg: mIoU ↑, Pixel Acc ↑; sn: Angle Mean ↓, Angle Median ↓" in md


def test_mean_std_block_by_hand(table):
    ada = table.mean[4]
    # mIoU of AdaShare over exp0, exp1: 30 and 28 -> 29 ± |30-28|/sqrt(2)
    miou = ada.cells[1]
    assert (miou.value, miou.std) == (pytest.approx(29.0), pytest.approx(2.0 / 2 ** 0.5))
    # Δ_seg of each seed against Single-Task's mean (mIoU 22.5, Pixel Acc 47.5):
    #   exp0 ((30-22.5)/22.5 + (55-47.5)/47.5)/2, exp1 ((28-22.5)/22.5 + (50-47.5)/47.5)/2
    d0 = (7.5 / 22.5 + 7.5 / 47.5) / 2 * 100
    d1 = (5.5 / 22.5 + 2.5 / 47.5) / 2 * 100
    assert ada.cells[-3].value == pytest.approx((d0 + d1) / 2)
    assert ada.cells[-3].std == pytest.approx(abs(d0 - d1) / 2 ** 0.5)
    assert ada.run == '2' and ada.note == '†' and ada.complete is False  # exp1 says run_complete: false
    assert table.best[4].note == '' and table.best[4].complete is True  # the best run, exp0, is complete
    assert '† a run whose result file says "run_complete": false.' in T.render_markdown(table)


def test_paper_rows_next_to_ours(table):
    assert [line.method for line in table.paper] == ['Single-Task', 'Multi-Task', 'Cross-Stitch', 'Sluice',
                                                     'NDDR-CNN', 'MTAN', 'AdaShare']
    md = T.render_markdown(table)
    assert '## Published: paper Table 1' in md
    # AdaShare as published, Δ against the published Single-Task: seg ((29.6-27.8)/27.8 + (61.3-58.5)/58.5)/2.
    row = _md_row(md, 2, 'AdaShare')
    assert row[:9] == ['AdaShare', '1', '29.6', '61.3', '16.6', '12.9', '45.0', '72.1', '83.2']
    assert table.paper[-1].cells[-3].value == pytest.approx((1.8 / 27.8 + 2.8 / 58.5) / 2 * 100)
    assert '**' not in md.split('## Published')[1].split('\n- ')[0]  # marks rank our rows only


def test_missing_runs_are_listed_with_their_commands(table):
    md = T.render_markdown(table)
    missing = md.split('## Missing runs')[1]
    assert '- Sluice: config tests/data/tables/configs/sluice_not_written.yml not found (no runs)' in missing
    assert '- MTAN: exp_ids 0 1 missing (test_metrics_exp<E>.json in tests/data/tables/results/tables_mtan)' in missing
    assert 'python re-train.py --config tests/data/tables/configs/mtan.yml --gpus 0 --exp_ids 0 1' in missing
    assert 'python test.py --config tests/data/tables/configs/mtan.yml --gpus 0 --exp_ids 0 1' in missing
    # A baseline learns no policy; AdaShare (no policy checkpoint in the fixture) does.
    assert 'train_policy.py --config tests/data/tables/configs/mtan.yml' not in missing
    assert '- AdaShare: exp_ids 2 missing' in missing
    assert 'python train_policy.py --config tests/data/tables/configs/adashare.yml --gpus 0' in missing
    assert 'python re-train.py --config tests/data/tables/configs/adashare.yml --gpus 0 --exp_ids 2' in missing
    assert 'python test.py --config tests/data/tables/configs/adashare.yml --gpus 0 --exp_ids 2' in missing
    assert '- Single-Task' not in missing and '- Multi-Task' not in missing
    assert _md_row(md, 0, 'MTAN')[1:] == ['–'] * 12  # the row is still there


def _tmp_setting(tmp_path, config_name: str = 'single_task.yml', **changes) -> str:
    """A copy of a fixture config whose results go to tmp_path/results; returns its path."""
    with open(os.path.join(DATA, 'configs', config_name)) as handle:
        cfg = yaml.safe_load(handle)
    cfg['paths'] = {key: str(tmp_path / key) for key in ('log_dir', 'result_dir', 'checkpoint_dir')}
    cfg.update(changes)
    path = tmp_path / f'{cfg["exp_name"]}.yml'
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _spec(tmp_path, rows, paper_table=None, reference='Single-Task') -> str:
    path = tmp_path / 'spec.yml'
    path.write_text(yaml.safe_dump({'title': 't', 'paper_table': paper_table, 'reference': reference,
                                    'rows': rows}))
    return str(path)


def test_result_of_another_setting_is_one_clear_error(tmp_path):
    config = _tmp_setting(tmp_path)
    folder = tmp_path / 'result_dir' / 'tables_single_task'
    folder.mkdir(parents=True)
    other = {'seg': {'mIoU': 0.3, 'Pixel Acc': 0.6}, 'depth': {'abs_err': 0.5}, 'val_score': 1.0}
    (folder / 'test_metrics_exp000.json').write_text(json.dumps(other))
    spec = _spec(tmp_path, [{'method': 'Single-Task', 'config': config}])
    with pytest.raises(T.TableError) as err:
        T.build_table(T.load_spec(spec))
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith(str(folder / 'test_metrics_exp000.json'))
    assert "tasks ['seg', 'depth']; expected ['seg', 'sn']" in message

    wrong = _results('tables_multi_task', 0)  # another architecture than the config's
    (folder / 'test_metrics_exp000.json').write_text(json.dumps(wrong))
    with pytest.raises(T.TableError, match="architecture 'multi_task'; expected 'single_task'"):
        T.build_table(T.load_spec(spec))


def test_config_of_another_setting_is_one_clear_error(tmp_path):
    rows = [{'method': 'Single-Task', 'config': 'tests/data/tables/configs/single_task.yml'},
            {'method': 'AdaShare', 'config': 'yamls/synthetic/nyu_v2_3task.yml'}]
    with pytest.raises(T.TableError) as err:
        T.build_table(T.load_spec(_spec(tmp_path, rows)))
    assert str(err.value) == ("yamls/synthetic/nyu_v2_3task.yml: dataset NYU_v2, tasks ['seg', 'sn', 'depth']; "
                              "expected dataset NYU_v2, tasks ['seg', 'sn'] as the first row "
                              "(tests/data/tables/configs/single_task.yml)")
    with pytest.raises(T.TableError, match=r"single_task\.yml: dataset NYU_v2, tasks \['seg', 'sn'\]; expected "
                                           r"dataset CityScapes, tasks \['seg', 'depth'\] as paper Table 2"):
        T.build_table(T.load_spec(_spec(tmp_path, rows[:1], paper_table=2)))


def test_missing_paper_metric_in_a_result_names_file_and_key(tmp_path):
    config = _tmp_setting(tmp_path)
    folder = tmp_path / 'result_dir' / 'tables_single_task'
    folder.mkdir(parents=True)
    result = _results('tables_single_task', 0)
    del result['sn']['Angle 30']
    (folder / 'test_metrics_exp000.json').write_text(json.dumps(result))
    with pytest.raises(T.TableError, match=r"test_metrics_exp000\.json: sn\.Angle 30 missing"):
        T.build_table(T.load_spec(_spec(tmp_path, [{'method': 'Single-Task', 'config': config}])))


def test_bad_specs(tmp_path):
    with pytest.raises(T.TableError, match='no such table spec'):
        T.load_spec(str(tmp_path / 'absent.yml'))
    bad = tmp_path / 'bad.yml'
    bad.write_text('rows: []\n')
    with pytest.raises(T.TableError, match='rows: expected a non-empty list'):
        T.load_spec(str(bad))
    row = {'method': 'A', 'config': 'x.yml'}
    with pytest.raises(T.TableError, match=r"reference = 'Single-Task': expected one of the rows' methods \['A'\]"):
        T.load_spec(_spec(tmp_path, [row]))
    with pytest.raises(T.TableError, match='paper_table = 7'):
        T.load_spec(_spec(tmp_path, [row], paper_table=7, reference=None))
    with pytest.raises(T.TableError, match=r"rows\[0\]: unknown key\(s\) \['seeds'\]"):
        T.load_spec(_spec(tmp_path, [{**row, 'seeds': [1]}], reference=None))
    with pytest.raises(T.TableError, match=r"rows\[0\]: exp_ids = 'all'"):
        T.load_spec(_spec(tmp_path, [{**row, 'exp_ids': 'all'}], reference=None))


# ------------------------------------------------------------------------------------------------ paper data
PAPER_SHAPES = {1: ('NYU_v2', ['seg', 'sn'], 7, 7, True), 2: ('CityScapes', ['seg', 'depth'], 7, 7, True),
                3: ('NYU_v2', ['seg', 'sn', 'depth'], 7, 12, True),
                4: ('Taskonomy', ['seg', 'sn', 'depth', 'keypoint', 'edge'], 7, 5, True),
                5: ('CityScapes', ['seg', 'depth'], 6, 7, False), 6: ('NYU_v2', ['seg', 'sn', 'depth'], 6, 12, False),
                8: ('NYU_v2', ['seg', 'sn'], 6, 7, False)}


def test_paper_data_has_every_table_with_its_rows_and_columns():
    tables = T.load_paper_tables()
    assert sorted(t['table'] for t in tables) == sorted(PAPER_SHAPES)
    for table in tables:
        dataset, tasks, n_rows, n_columns, has_params = PAPER_SHAPES[table['table']]
        assert (table['dataset'], table['tasks']) == (dataset, tasks)
        assert [tuple(c) for c in table['columns']] == [(t, k) for t in tasks for k, _ in paper_metrics(dataset, t)]
        assert len(table['columns']) == len(table['decimals']) == n_columns
        assert len(table['rows']) == n_rows
        for row in table['rows']:
            assert row['table'] == table['table'] and len(row['values']) == n_columns
            assert (row['params'] is not None) == has_params
        methods = [row['method'] for row in table['rows']]
        assert methods[-1] == ('AdaShare' if has_params else 'Full Model')
        reference = T.paper_table(table['delta_reference']['table'])
        assert reference['dataset'] == dataset and reference['tasks'] == tasks
        assert table['delta_reference']['method'] in [r['method'] for r in reference['rows']]
    # Spot checks against the paper: Table 3 AdaShare, Table 4 NDDR-CNN, Table 5 w/o L_sharing.
    assert T.paper_table(3)['rows'][-1]['values'] == [30.2, 62.4, 16.6, 12.9, 45.0, 71.7, 83.0, 0.55, 0.20, 64.5,
                                                      90.5, 97.8]
    assert T.paper_table(4)['rows'][4] == {'table': 4, 'method': 'NDDR-CNN', 'params': 5.41,
                                           'values': [0.539, 0.705, 0.024, 0.194, 0.206]}
    assert T.paper_table(5)['rows'][4]['values'] == [41.5, 74.9, 0.016, 0.35, 74.0, 88.7, 94.4]


def test_shipped_specs_match_their_paper_tables():
    folder = os.path.join(ROOT, 'yamls', 'tables')
    names = sorted(os.listdir(folder))
    assert names == ['synthetic_backbones.yml', 'synthetic_backbones_mobilenetv2.yml', 'synthetic_backbones_wrn.yml',
                     'synthetic_known_answer.yml', 'synthetic_table3.yml', 'synthetic_weighting.yml', 'table1.yml',
                     'table2.yml', 'table3.yml', 'table4.yml', 'table5.yml', 'table6.yml', 'table8.yml']
    for name in names:
        if name.startswith(('synthetic_backbones', 'synthetic_weighting', 'synthetic_known_answer')):
            continue  # checked by tests/test_weighting.py, tests/test_backbones.py and tests/test_known_answer.py
        spec = T.load_spec(os.path.join(folder, name))
        methods = [row.method for row in spec.rows]
        assert spec.reference == 'Single-Task' and methods[0] == 'Single-Task'
        if spec.paper_table is None:
            assert len(methods) == 12  # six baselines, AdaShare, five ablations
            continue
        paper = [row['method'] for row in T.paper_table(spec.paper_table)['rows']]
        assert [m for m in methods if m != 'Single-Task' or 'Single-Task' in paper] == paper, name


# ------------------------------------------------------------------------------------------------ command line
def test_cli_writes_the_three_files_and_prints_the_markdown(tmp_path, capsys):
    out = tmp_path / 'out'
    assert main(['--spec', SPEC, '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(os.listdir(out)) == ['fixture.csv', 'fixture.md', 'fixture.tex']
    assert (out / 'fixture.md').read_text(encoding='utf-8') in printed
    with open(os.path.join(GOLDEN, 'fixture.tex'), encoding='utf-8') as handle:
        assert (out / 'fixture.tex').read_text(encoding='utf-8') == handle.read()


def test_cli_runs_from_another_folder(tmp_path):
    spec = tmp_path / 'fixture.yml'
    shutil.copy(SPEC, spec)  # its row configs are relative to the repository root
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'tables.py'), '--spec', str(spec),
                           '--out', str(tmp_path / 'out')], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert '# Fixture: NYU v2 2-task' in done.stdout
    assert (tmp_path / 'out' / 'fixture.csv').is_file()
