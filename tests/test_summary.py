"""evaluation/summary.py: per-run values, mean ± sample std, best run, AutoMTL Δ_t, policies, errors, CLI."""
import json
import math
import os
import re

import pytest
import yaml

from evaluation import summary as S
from tools.summary import main
from evaluation.summary import ResultsNotFoundError, SummaryError, format_summary, summarize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXP = 'NYU_v2_3Task_pretrain'

# Two runs with round numbers; the expected values below are worked out by hand.
RUN0 = {'seg': {'mIoU': 0.30, 'Pixel Acc': 0.60, 'err': 1.5},
        'sn': {'Angle Mean': 18.0, 'Angle 11.25': 30.0},
        'depth': {'abs_err': 0.6, 'sigma_1.25': 60.0}}
RUN1 = {'seg': {'mIoU': 0.20, 'Pixel Acc': 0.50, 'err': 2.5},
        'sn': {'Angle Mean': 22.0, 'Angle 11.25': 50.0},
        'depth': {'abs_err': 0.4, 'sigma_1.25': 40.0}}
SINGLE = {'seg': {'mIoU': 0.25, 'Pixel Acc': 0.50},
          'sn': {'Angle Mean': 20.0, 'Angle 11.25': 40.0},
          'depth': {'abs_err': 0.5, 'sigma_1.25': 50.0}}
# The metric sets of the hand examples above (custom sets: the runs hold only some of the paper's metrics).
CUSTOM = {'seg': [('mIoU', False), ('Pixel Acc', False)], 'sn': [('Angle Mean', True), ('Angle 11.25', False)],
          'depth': [('abs_err', True), ('sigma_1.25', False)]}
POLICY0 = {'task1_policy': [[1, 0], [0, 1], [1, 0], [1, 0]],
           'task2_policy': [[1, 0], [1, 0], [1, 0], [1, 0]],
           'task3_policy': [[0, 1], [0, 1], [1, 0], [0, 1]]}


def _run(metrics: dict, **extra) -> dict:
    return {**json.loads(json.dumps(metrics)), **extra}


# ------------------------------------------------------------------------------------------------- summarize
def test_values_mean_sample_std_and_best_by_val_score():
    results = {1: _run(RUN1, val_score=2.9), 0: _run(RUN0, val_score=3.1)}
    summary = summarize(results, None, seeds=[48, 7])
    assert summary['exp_ids'] == [0, 1]
    assert summary['seeds'] == {0: 48, 1: 7}
    assert summary['tasks'] == ['seg', 'sn', 'depth']
    miou = summary['metrics']['seg']['mIoU']
    assert miou['values'] == {0: 0.30, 1: 0.20}
    assert miou['n'] == 2
    assert miou['mean'] == pytest.approx(0.25)
    # sample std (ddof=1) of two values a, b is |a - b| / sqrt(2)
    assert miou['std'] == pytest.approx(0.10 / math.sqrt(2))
    assert summary['metrics']['sn']['Angle 11.25']['std'] == pytest.approx(20.0 / math.sqrt(2))
    assert summary['metrics']['seg']['err']['lower_is_better'] is True
    assert summary['metrics']['seg']['mIoU']['lower_is_better'] is False
    assert 'ddof=1' in summary['std']

    score = summary['score']
    assert score['values'] == {0: 3.1, 1: 2.9}
    assert score['best_exp_id'] == 0
    assert score['source_kind'] == S.SCORE_FROM_JSON
    assert score['mean'] == pytest.approx(3.0)
    assert 'delta' not in summary


def test_three_runs_sample_std_by_hand():
    values = [1.0, 2.0, 4.0]
    results = {e: {'seg': {'mIoU': v}} for e, v in enumerate(values)}
    stats = summarize(results, None)['metrics']['seg']['mIoU']
    mean = 7.0 / 3.0
    assert stats['mean'] == pytest.approx(mean)
    assert stats['std'] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / 2))


def test_single_run_has_no_std():
    summary = summarize({3: _run(RUN0, val_score=3.0)}, None)
    assert summary['metrics']['seg']['mIoU']['std'] is None
    assert summary['metrics']['seg']['mIoU']['mean'] == pytest.approx(0.30)
    assert summary['score']['best_exp_id'] == 3
    miou_row = next(line for line in format_summary(summary).splitlines() if ' mIoU ' in line)
    assert miou_row.split()[2:] == ['0.3000', '0.3000']  # exp3's value, then the mean without ± std


def test_score_computed_from_reference_when_val_score_missing():
    reference = {'seg': {'mIoU': 0.25, 'Pixel Acc': 0.5}, 'sn': {'Angle Mean': 20.0}}
    summary = summarize({0: _run(RUN0), 1: _run(RUN1)}, None, reference=reference)
    score = summary['score']
    # run 0: seg (0.30/0.25 + 0.60/0.5) / 2 = 1.2; sn 20/18 (lower is better) -> 2.3111
    # run 1: seg (0.20/0.25 + 0.50/0.5) / 2 = 0.9; sn 20/22 -> 1.8091
    assert score['values'][0] == pytest.approx(1.2 + 20 / 18)
    assert score['values'][1] == pytest.approx(0.9 + 20 / 22)
    assert score['best_exp_id'] == 0
    assert score['source'] == {0: S.SCORE_COMPUTED, 1: S.SCORE_COMPUTED}
    assert score['source_kind'] == S.SCORE_COMPUTED


def test_mixed_score_sources_and_unknown_score():
    reference = {'seg': {'mIoU': 0.25}}
    summary = summarize({0: _run(RUN0), 1: _run(RUN1, val_score=5.0)}, None, reference=reference)
    assert summary['score']['values'] == {0: pytest.approx(1.2), 1: 5.0}
    assert summary['score']['best_exp_id'] == 1
    assert summary['score']['source_kind'] == 'mixed'
    text = format_summary(summary)
    assert f'exp0: {S.SCORE_COMPUTED}; exp1: {S.SCORE_FROM_JSON}' in text

    unknown = summarize({0: _run(RUN0), 1: _run(RUN1)}, None)
    assert unknown['score']['best_exp_id'] is None and unknown['score']['missing'] == [0, 1]
    assert 'best run: unknown' in format_summary(unknown)


def test_lower_is_better_directions():
    lower = [('sn', 'Angle Mean'), ('sn', 'Angle Median'), ('sn', 'Angle RMSE'), ('depth', 'abs_err'),
             ('depth', 'rel_err'), ('depth', 'sq_rel_err'), ('depth', 'rms'), ('seg', 'err'),
             ('keypoint', 'err'), ('edge', 'err')]
    higher = [('seg', 'mIoU'), ('seg', 'Pixel Acc'), ('sn', 'Angle 11.25'), ('sn', 'Angle 45'),
              ('sn', 'cosine_similarity'), ('depth', 'sigma_1.25'), ('depth', 'sigma_1.25^3')]
    assert all(S.lower_is_better(t, m) for t, m in lower)
    assert not any(S.lower_is_better(t, m) for t, m in higher)


def test_delta_against_single_task_by_hand():
    summary = summarize({0: _run(RUN0), 1: _run(RUN1)}, SINGLE, seeds=[48, 7], metric_sets=CUSTOM)
    delta = summary['delta']
    # run 0: seg  ((0.30-0.25)/0.25 + (0.60-0.50)/0.50) / 2 * 100 = (20 + 20) / 2 = 20   (seg err not in SINGLE)
    #        sn   (-(18-20)/20 + (30-40)/40) / 2 * 100 = (10 - 25) / 2 = -7.5
    #        depth (-(0.6-0.5)/0.5 + (60-50)/50) / 2 * 100 = (-20 + 20) / 2 = 0
    # run 1: seg  (-20 + 0) / 2 = -10; sn (-10 + 25) / 2 = 7.5; depth (20 - 20) / 2 = 0
    expected = {0: {'seg': 20.0, 'sn': -7.5, 'depth': 0.0}, 1: {'seg': -10.0, 'sn': 7.5, 'depth': 0.0}}
    for e, per_task in expected.items():
        for task, value in per_task.items():
            assert delta['per_exp'][e][task] == pytest.approx(value, abs=1e-9)
    assert delta['per_exp'][0]['all'] == pytest.approx((20.0 - 7.5 + 0.0) / 3)
    assert delta['per_exp'][1]['all'] == pytest.approx((-10.0 + 7.5 + 0.0) / 3)
    assert delta['mean']['seg']['mean'] == pytest.approx(5.0)
    assert delta['mean']['seg']['std'] == pytest.approx(30.0 / math.sqrt(2))
    assert delta['mean']['sn']['mean'] == pytest.approx(0.0, abs=1e-9)
    assert delta['mean']['all']['mean'] == pytest.approx((12.5 / 3 - 2.5 / 3) / 2)
    assert delta['metrics_used']['seg'] == ['mIoU', 'Pixel Acc']
    assert delta['tasks_without_reference'] == []

    text = format_summary(summary)
    assert 'AutoMTL' in text
    assert ('metrics in Δ_t (explicit metric_sets): seg: mIoU ↑, Pixel Acc ↑; sn: Angle Mean ↓, Angle 11.25 ↑; '
            'depth: abs_err ↓, sigma_1.25 ↑') in text
    seg_row = next(line for line in text.splitlines() if line.startswith('seg ') and 'mIoU, Pixel Acc' in line)
    assert '+20.00' in seg_row and '-10.00' in seg_row and '+5.00 ± 21.21' in seg_row


def test_delta_of_mean_metrics_equals_mean_of_deltas():
    """Δ_t is linear in the metrics, so reporting the mean of per-run Δ_t is Δ_t of the mean run."""
    mean_run = {t: {m: (RUN0[t][m] + RUN1[t][m]) / 2 for m in RUN0[t]} for t in RUN0}
    summary = summarize({0: _run(RUN0), 1: _run(RUN1)}, SINGLE, metric_sets=CUSTOM)
    assert S.multitask_delta(mean_run, SINGLE, metric_sets=CUSTOM)['all'] == pytest.approx(
        summary['delta']['mean']['all']['mean'])


def test_delta_skips_tasks_without_reference_and_rejects_bad_references():
    single = {'seg': SINGLE['seg']}
    delta = summarize({0: _run(RUN0)}, single, metric_sets=CUSTOM)['delta']
    assert set(delta['per_exp'][0]) == {'seg', 'all'}
    assert delta['per_exp'][0]['all'] == pytest.approx(20.0)
    assert delta['tasks_without_reference'] == ['sn', 'depth']
    assert 'no single-task reference (not in Δ): sn, depth' in format_summary(
        summarize({0: _run(RUN0)}, single, metric_sets=CUSTOM))

    with pytest.raises(SummaryError, match='none of the tasks'):
        summarize({0: _run(RUN0)}, {'keypoint': {'err': 0.2}}, metric_sets=CUSTOM)
    with pytest.raises(SummaryError, match=r"single-task reference: seg\.mIoU missing"):
        summarize({0: _run(RUN0)}, {'seg': {'Angle Mean': 1.0}}, metric_sets=CUSTOM)
    with pytest.raises(SummaryError, match=r'seg\.mIoU = 0'):
        summarize({0: _run(RUN0)}, {'seg': {'mIoU': 0.0, 'Pixel Acc': 0.5}}, metric_sets=CUSTOM)
    with pytest.raises(SummaryError, match='needs the dataset'):
        summarize({0: _run(RUN0)}, SINGLE)
    with pytest.raises(SummaryError, match=r"no metrics given for task\(s\) \['sn'\]"):
        summarize({0: _run(RUN0)}, SINGLE, metric_sets={'seg': CUSTOM['seg'], 'depth': CUSTOM['depth']})


# ------------------------------------------------------------------------------------------------- paper Δ_t
# test.py-shaped results of NYU v2 3-task: the paper's metrics plus seg err, Angle 45, the extras, the policy,
# the validation score and the architecture / model-size keys, none of which may enter Δ_t.
SINGLE_JSON = {
    'seg': {'mIoU': 0.25, 'Pixel Acc': 0.50, 'err': 1.0},
    'sn': {'Angle Mean': 20.0, 'Angle Median': 16.0, 'Angle 11.25': 40.0, 'Angle 22.5': 50.0, 'Angle 30': 80.0,
           'Angle 45': 90.0, 'Angle RMSE': 25.0},
    'depth': {'abs_err': 0.5, 'rel_err': 0.2, 'sigma_1.25': 50.0, 'sigma_1.25^2': 80.0, 'sigma_1.25^3': 90.0,
              'sq_rel_err': 1.0, 'rms': 2.0},
    'policy': POLICY0, 'val_score': 3.0, 'architecture': 'single_task',
    'model_size': {'params_ratio': 3.0, 'total_params': 63_000_000, 'flops_g': 55.6}, 'run_complete': True,
}
MULTI_JSON = {
    'seg': {'mIoU': 0.30, 'Pixel Acc': 0.55, 'err': 2.0},
    'sn': {'Angle Mean': 18.0, 'Angle Median': 20.0, 'Angle 11.25': 44.0, 'Angle 22.5': 45.0, 'Angle 30': 84.0,
           'Angle 45': 45.0, 'Angle RMSE': 50.0},
    'depth': {'abs_err': 0.4, 'rel_err': 0.25, 'sigma_1.25': 60.0, 'sigma_1.25^2': 88.0, 'sigma_1.25^3': 90.0,
              'sq_rel_err': 3.0, 'rms': 1.0},
    'policy': POLICY0, 'val_score': 3.2, 'architecture': 'adashare',
    'model_size': {'params_ratio': 1.0, 'total_params': 21_000_000, 'flops_g': 50.1}, 'run_complete': True,
}


def test_paper_delta_on_test_py_shaped_results_by_hand():
    # seg:   mIoU +20, Pixel Acc +10                                   -> (20 + 10) / 2            = 15
    # sn:    Mean -(18-20)/20 = +10, Median -(20-16)/16 = -25, 11.25 +10, 22.5 -10, 30 +5
    #                                                                  -> (10 - 25 + 10 - 10 + 5) / 5 = -2
    # depth: abs -(0.4-0.5)/0.5 = +20, rel -(0.25-0.2)/0.2 = -25, δ1 +20, δ2 +10, δ3 0
    #                                                                  -> (20 - 25 + 20 + 10 + 0) / 5 = 5
    # Δ_T = (15 - 2 + 5) / 3 = 6. (err, Angle 45, Angle RMSE, sq_rel_err, rms would give seg -23.3, sn -26.4.)
    delta = S.multitask_delta(MULTI_JSON, SINGLE_JSON, 'NYU_v2')
    assert delta == {'seg': pytest.approx(15.0), 'sn': pytest.approx(-2.0), 'depth': pytest.approx(5.0),
                     'all': pytest.approx(6.0)}
    summary = summarize({0: MULTI_JSON}, SINGLE_JSON, dataset='NYU_v2')
    assert summary['tasks'] == ['seg', 'sn', 'depth']  # architecture, model_size, run_complete are no tasks
    assert summary['delta']['per_exp'][0] == delta
    assert summary['delta']['metrics_used'] == {
        'seg': ['mIoU', 'Pixel Acc'], 'sn': ['Angle Mean', 'Angle Median', 'Angle 11.25', 'Angle 22.5', 'Angle 30'],
        'depth': ['abs_err', 'rel_err', 'sigma_1.25', 'sigma_1.25^2', 'sigma_1.25^3']}
    text = format_summary(summary)
    assert ("metrics in Δ_t (the paper's metrics of NYU_v2): seg: mIoU ↑, Pixel Acc ↑; sn: Angle Mean ↓, "
            "Angle Median ↓, Angle 11.25 ↑, Angle 22.5 ↑, Angle 30 ↑; depth: abs_err ↓, rel_err ↓, sigma_1.25 ↑, "
            "sigma_1.25^2 ↑, sigma_1.25^3 ↑") in text
    assert S.DELTA_FORMULA in text


def test_issue_reproduction_seg_err_is_not_in_delta():
    delta = S.multitask_delta({'seg': {'mIoU': .30, 'Pixel Acc': .60, 'err': 2.0}},
                              {'seg': {'mIoU': .25, 'Pixel Acc': .50, 'err': 1.0}}, 'NYU_v2')
    assert delta['seg'] == pytest.approx(20.0)
    assert delta['all'] == pytest.approx(20.0)


def test_taskonomy_delta_uses_test_losses_and_cosine_similarity():
    single = {'seg': {'err': 0.5}, 'sn': {'cosine_similarity': 0.8, 'Angle Mean': 20.0}, 'depth': {'abs_err': 0.02},
              'keypoint': {'err': 0.2}, 'edge': {'err': 0.2}}
    multi = {'seg': {'err': 0.4}, 'sn': {'cosine_similarity': 0.88, 'Angle Mean': 40.0}, 'depth': {'abs_err': 0.025},
             'keypoint': {'err': 0.2}, 'edge': {'err': 0.19}}
    delta = S.multitask_delta(multi, single, 'Taskonomy')
    # seg -(0.4-0.5)/0.5 = +20; sn (0.88-0.8)/0.8 = +10 (higher is better); depth -25; keypoint 0; edge +5
    assert delta == {'seg': pytest.approx(20.0), 'sn': pytest.approx(10.0), 'depth': pytest.approx(-25.0),
                     'keypoint': pytest.approx(0.0), 'edge': pytest.approx(5.0), 'all': pytest.approx(2.0)}


def test_missing_paper_metric_is_an_error_naming_it_and_the_side():
    results = {**MULTI_JSON, 'sn': {k: v for k, v in MULTI_JSON['sn'].items() if k != 'Angle Median'}}
    with pytest.raises(SummaryError, match=r'^run7\.json: sn\.Angle Median missing'):
        summarize({7: results}, SINGLE_JSON, dataset='NYU_v2', sources={7: 'run7.json'})
    single = {**SINGLE_JSON, 'depth': {k: v for k, v in SINGLE_JSON['depth'].items() if k != 'sigma_1.25^3'}}
    with pytest.raises(SummaryError, match=r'^single\.json: depth\.sigma_1\.25\^3 missing'):
        summarize({0: MULTI_JSON}, single, dataset='NYU_v2', single_source='single.json')
    with pytest.raises(SummaryError, match=r'^reference: seg\.mIoU missing'):
        S.multitask_delta({'seg': {'mIoU': 0.3, 'Pixel Acc': 0.5}}, {'seg': {'Pixel Acc': 0.5}}, 'CityScapes')
    with pytest.raises(SummaryError, match="no task 'sn' on CityScapes"):
        S.multitask_delta(MULTI_JSON, SINGLE_JSON, 'CityScapes')


def test_custom_metric_set_through_the_explicit_argument():
    delta = S.multitask_delta(MULTI_JSON, SINGLE_JSON, metric_sets={'seg': [('err', True)], 'sn': [('Angle 45', False)],
                                                                    'depth': [('rms', True)]})
    assert delta == {'seg': pytest.approx(-100.0), 'sn': pytest.approx(-50.0), 'depth': pytest.approx(50.0),
                     'all': pytest.approx(-100.0 / 3)}


def test_policy_strings_and_executed_blocks():
    summary = summarize({0: _run(RUN0, policy=POLICY0), 1: _run(RUN1)}, None, tasks=['seg', 'sn', 'depth'])
    policy = summary['policy']
    assert list(policy) == [0]  # run 1 has no policy
    assert policy[0]['strings'] == {'seg': 'X.XX', 'sn': 'XXXX', 'depth': '..X.'}
    assert policy[0]['executed'] == {'seg': 3, 'sn': 4, 'depth': 1}
    assert policy[0]['executed_total'] == 8 and policy[0]['blocks_total'] == 12
    text = format_summary(summary)
    assert 'executed 8/12 blocks' in text
    assert '  seg  : X.XX  3/4' in text and '  depth: ..X.  1/4' in text

    # Without task names the policy keys name the rows.
    unnamed = summarize({0: {'seg': {'mIoU': 0.3}, 'policy': POLICY0}}, None)
    assert unnamed['policy'][0]['strings']['task3'] == '..X.'


def test_bad_result_content_names_the_source():
    with pytest.raises(SummaryError, match=r'run\.json: seg\.mIoU = \'high\': expected a number'):
        summarize({0: {'seg': {'mIoU': 'high'}}}, None, sources={0: 'run.json'})
    with pytest.raises(SummaryError, match='exp_id 0: no task metrics'):
        summarize({0: {'val_score': 1.0}}, None)
    with pytest.raises(SummaryError, match='exp_id 0: expected a JSON object'):
        summarize({0: [1, 2]}, None)
    with pytest.raises(SummaryError, match=r'policy\.task1_policy must be a list of \[1, 0\]'):
        summarize({0: _run(RUN0, policy={'task1_policy': [[0.5, 0.5]]})}, None)
    with pytest.raises(SummaryError, match='val_score'):
        summarize({0: _run(RUN0, val_score='best')}, None)
    with pytest.raises(SummaryError, match='no results'):
        summarize({}, None)


# ------------------------------------------------------------------------------------------------- files + CLI
@pytest.fixture
def experiment(tmp_path):
    """A test yaml (the shipped NYU 3-task one, seeds [48, 7], paths in tmp) and its result directory."""
    with open(os.path.join(ROOT, 'yamls', 'adashare', 'nyu_v2_3task_test.yml')) as handle:
        cfg = yaml.safe_load(handle)
    cfg['seed'] = [48, 7, 9]
    cfg['paths'] = {key: str(tmp_path / key) for key in ('log_dir', 'result_dir', 'checkpoint_dir')}
    config = tmp_path / 'exp.yml'
    config.write_text(yaml.safe_dump(cfg))
    results = tmp_path / 'result_dir' / EXP
    results.mkdir(parents=True)
    return str(config), results


def _complete(run: dict) -> dict:
    """`run` with the paper's NYU metrics it lacks taken from SINGLE_JSON (their Δ terms are 0)."""
    return {**run, **{t: {**SINGLE_JSON[t], **run[t]} for t in ('seg', 'sn', 'depth')}}


def _write(results, exp_id: int, data) -> str:
    path = results / f'test_metrics_exp{exp_id:03d}.json'
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_cli_discovers_every_result_and_prints_the_table(experiment, capsys, tmp_path):
    config, results = experiment
    _write(results, 0, _complete(_run(RUN0, val_score=3.1, policy=POLICY0)))
    _write(results, 1, _complete(_run(RUN1, val_score=2.9, policy=POLICY0)))
    (results / 'test_metrics_exp002.json.tmp').write_text('{')  # not a result file: ignored
    (results / '.test_metrics_exp002.json.123.abcd.tmp').write_text('{')
    single = tmp_path / 'single.json'
    single.write_text(json.dumps(SINGLE_JSON))
    out_json = tmp_path / 'out' / 'summary.json'

    assert main(['--config', config, '--single-task', str(single), '--json', str(out_json)]) == 0
    text = capsys.readouterr().out
    assert f'Experiment {EXP}' in text
    assert '2 run(s): exp0 (seed 48), exp1 (seed 7)' in text
    header = next(line for line in text.splitlines() if line.startswith('task ') and 'metric' in line)
    assert 'exp0 (seed 48)' in header and 'exp1 (seed 7)' in header and 'mean ± std' in header
    miou = next(line for line in text.splitlines() if line.startswith('seg') and ' mIoU ' in line)
    assert miou.split()[2:] == ['0.3000', '0.2000', '0.2500', '±', '0.0707']
    assert 'sample standard deviation (ddof=1)' in text
    assert f'best run by validation score: exp0 (seed 48), score 3.1000 (score from: {S.SCORE_FROM_JSON})' in text
    assert '  seg  : X.XX  3/4' in text
    assert f'wrote {out_json}' in text

    saved = json.loads(out_json.read_text())
    assert saved['exp_ids'] == [0, 1]
    assert saved['metrics']['seg']['mIoU']['values'] == {'0': 0.3, '1': 0.2}
    assert saved['score']['best_exp_id'] == 0
    assert saved['delta']['per_exp']['0']['seg'] == pytest.approx(20.0)
    assert saved['experiment'] == EXP
    assert saved['files']['1'] == str(results / 'test_metrics_exp001.json')
    assert not [n for n in os.listdir(out_json.parent) if n.endswith('.tmp')]


def test_cli_selected_exp_ids_and_computed_score(experiment, capsys):
    config, results = experiment
    _write(results, 0, _run(RUN0))
    _write(results, 2, _run(RUN1))
    assert main(['--config', config, '--exp_ids', '2']) == 0
    text = capsys.readouterr().out
    assert '1 run(s): exp2 (seed 9)' in text and 'exp0' not in text
    # NYU 3-task reference: seg {mIoU .275, Pixel Acc .589}; sn {Angle Mean 17.5, Angle 11.25 34.9 among others};
    # depth {abs_err .62, sigma_1.25 57.9 among others}; only the metrics present in the run count.
    expected = ((0.20 / 0.275 + 0.50 / 0.589) / 2 + (17.5 / 22.0 + 50.0 / 34.9) / 2
                + (0.62 / 0.4 + 40.0 / 57.9) / 2)
    assert f'score {expected:.4f} (score from: {S.SCORE_COMPUTED})' in text


def test_missing_results_list_paths_and_the_test_command(experiment):
    config, results = experiment
    with pytest.raises(ResultsNotFoundError) as err:
        main(['--config', config])
    message = str(err.value)
    assert os.path.join(str(results), 'test_metrics_exp*.json') in message
    assert f'python test.py --config {config} --gpus -1 --exp_ids E' in message

    _write(results, 0, _run(RUN0))
    with pytest.raises(ResultsNotFoundError) as err:
        main(['--config', config, '--exp_ids', '0', '1', '2'])
    message = str(err.value)
    assert 'missing test results for exp_ids [1, 2]' in message
    assert str(results / 'test_metrics_exp001.json') in message
    assert str(results / 'test_metrics_exp002.json') in message
    assert 'test_metrics_exp000.json' not in message
    assert f'python test.py --config {config} --gpus -1 --exp_ids 1' in message
    assert f'python test.py --config {config} --gpus -1 --exp_ids 2' in message
    assert isinstance(err.value, FileNotFoundError)


def test_malformed_json_names_the_file(experiment, tmp_path):
    config, results = experiment
    bad = _write(results, 1, '{"seg": {"mIoU": 0.3,')
    _write(results, 0, _run(RUN0))
    with pytest.raises(SummaryError, match=re.escape(bad) + ': malformed result file, not valid JSON'):
        main(['--config', config])
    _write(results, 1, {'seg': {'mIoU': 'high'}})  # (null is an undefined metric, skipped: test_reliability.py)
    with pytest.raises(SummaryError, match=re.escape(f'{results / "test_metrics_exp001.json"}: seg.mIoU = \'high\'')):
        main(['--config', config])

    _write(results, 1, _run(RUN1))
    single = tmp_path / 'single.json'
    single.write_text('not json')
    with pytest.raises(SummaryError, match=re.escape(f'{single}: malformed single-task reference')):
        main(['--config', config, '--single-task', str(single)])
    with pytest.raises(FileNotFoundError, match='--single-task .*absent.json: no such file'):
        main(['--config', config, '--single-task', str(tmp_path / 'absent.json')])


def test_exp_id_outside_the_seed_list_is_rejected(experiment):
    config, results = experiment
    _write(results, 0, _run(RUN0))
    with pytest.raises(ValueError, match='--exp_ids 5'):
        main(['--config', config, '--exp_ids', '5'])
