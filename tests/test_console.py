"""What the scripts print (engine/console.py): the metrics line, progress without a terminal, closing summaries."""
import io
import os

import torch

from engine import checkpoint as C
from engine import resume as T
from engine.console import Progress, closing_summary, files_written, format_bytes, format_duration, format_metrics


def test_one_metrics_line_with_four_decimals():
    metrics = {'seg': {'mIoU': 0.123456789, 'Pixel Acc': 0.5}, 'sn': {'Angle Mean': 31.0, 'cosine_similarity': None}}
    assert format_metrics(metrics) == ('seg: mIoU 0.1235, Pixel Acc 0.5000; '
                                       'sn: Angle Mean 31.0000, cosine_similarity None')


def test_sizes_and_durations_read_like_a_person_writes_them():
    assert [format_bytes(n) for n in (12, 1536, 5 * 2 ** 20, 3 * 2 ** 30)] == ['12 B', '1.5 KiB', '5.0 MiB',
                                                                                '3.00 GiB']
    assert [format_duration(s) for s in (4.25, 170, 3900, float('nan'))] == ['4.2 s', '2 min 50 s', '1 h 05 min',
                                                                              '?']


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_prints_plain_lines_with_eta_and_phase_when_stderr_is_not_a_terminal():
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress(100, initial=20, label='retrain exp 1', stream=stream, clock=clock)
    bar.set_phase('weights')
    for _ in range(80):
        clock.now += 0.5
        bar.update()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 20  # every 4 iterations (80 // 20), the last one included
    assert lines[0] == '[retrain exp 1] iteration 24/100 (24 %), 0.50 s/iter, ETA 38.0 s, phase weights'
    assert lines[-1] == '[retrain exp 1] iteration 100/100 (100 %), 0.50 s/iter, ETA 0.0 s, phase weights'


def test_progress_also_prints_after_a_quiet_spell_and_not_at_all_when_disabled():
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress(1000, stream=stream, clock=clock, max_quiet_s=60)
    clock.now = 61.0
    bar.update()
    assert stream.getvalue().startswith('iteration 1/1000 (0 %), 61.00 s/iter')
    quiet = io.StringIO()
    off = Progress(10, stream=quiet, enabled=False)
    for _ in range(10):
        off.update()
    assert quiet.getvalue() == ''


def test_closing_summary_lists_elapsed_best_and_every_file_with_its_size(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'best_model.pth.tar').write_bytes(b'x' * 2048)
    (tmp_path / 'a' / 'loss.txt').write_text('abc')
    (tmp_path / 'a' / 'x.pth.tar.tmp123').write_text('temp')
    old = tmp_path / 'a' / 'old.txt'
    old.write_text('old')
    os.utime(old, (1, 1))
    files = files_written([str(tmp_path / 'a'), str(tmp_path / 'missing')], since=1000.0)
    assert [os.path.basename(p) for p in files] == ['best_model.pth.tar', 'loss.txt']
    text = closing_summary('train_policy.py demo', 170.0, ['iteration 24, validation score 0.1234'], files)
    assert text.splitlines()[:3] == ['== train_policy.py demo: finished in 2 min 50 s',
                                     'best: iteration 24, validation score 0.1234',
                                     'files written (2, 2.0 KiB in all):']
    assert '     2.0 KiB  ' + str(tmp_path / 'a' / 'best_model.pth.tar') in text
    assert closing_summary('t', 1.0, [], []).endswith('best: none\nfiles written: none')


def test_policy_table_and_warning_name_a_task_that_executes_no_block():
    policies = [torch.tensor([[1, 0], [0, 1], [1, 0], [1, 0]]), torch.tensor([[0, 1]] * 4)]
    assert C.idle_tasks(policies, ['seg', 'sn']) == ['sn']
    table = C.format_policy_table(policies, ['seg', 'sn'])
    assert 'sn       .  .  .  .   0/4' in table
    assert table.splitlines()[-1].startswith('warning: sn executes none of the 4 gated blocks')
    assert 'another seed' in table and 'docs/getting_started.md: A task that executes no block' in table
    assert 'warning' not in C.format_policy_table(policies[:1], ['seg'])
    probs = C.format_policy_table(None, ['seg', 'sn'], probabilities=[torch.tensor([0.6, 0.4]),
                                                                      torch.tensor([0.3, 0.2])])
    assert 'warning: sn most likely executes (every p < 0.5) none of the 2 gated blocks' in probs


def test_completion_record_answers_progress_and_finished_checks(tmp_path):
    resume = str(tmp_path / 'retrain000_policyIterbest_resume_state.pth.tar')
    assert T.completion_path(resume) == str(tmp_path / 'retrain000_policyIterbest_run_complete.json')
    assert T.run_progress(resume, 'retrain_total_iters') is None and not T.run_finished(resume, 5)
    C.atomic_write_json(T.completion_path(resume), {'iteration': 5, 'total': 5, 'finished': '2024-01-01'})
    assert T.run_progress(resume, 'retrain_total_iters') == (5, 5)
    assert T.run_finished(resume, 5) and not T.run_finished(resume, 6)
    assert 'is complete: it already finished at iteration 5' in T.complete_message(resume, 5, 'run', 'x', 'DIR')
    try:
        T.complete_message(resume, 8, 'run', 'retrain_total_iters', 'DIR')
        raise AssertionError('a longer run than the finished one must be refused')
    except ValueError as err:
        assert 'retrain_total_iters is now 8' in str(err) and '--fresh' in str(err)
    T.forget_completion(resume)
    assert not T.run_finished(resume, 5)
