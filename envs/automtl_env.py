"""AutoMTLEnv: the three stages of AutoMTL (docs/automtl.md "Training") on the supermodel of models/automtl.

  'pretrain' - every weight, the options averaged (mode pretrain); Adam(lr, betas (0.5, 0.999), wd 1e-4);
  'weights'  - soft (Gumbel-Softmax) forward, SGD(weight_lr, momentum 0.9, wd 1e-4) on the weights (train1);
  'policy'   - soft forward, Adam(policy_lr, wd 5e-4) on the logits, task losses + lambda_reg * L_reg (train2);
  'retrain'  - the sampled architecture from scratch (hard mode: only the chosen options run), Adam +
               StepLR(decay_lr_freq, decay_lr_rate) stepped every iteration.
The temperature is a pure function of the policy steps taken (models.automtl.temperature); validation
during the search uses the argmax policy, retraining and test.py the sampled one. Policies are one
[num_convs] choice vector per task (0 shared, 1 specific, 2 skip), stored as `automtl_policy*.json`.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import torch

from engine import checkpoint as ckpt
from engine.automtl_loop import AutoMTLLoop
from engine.device import DistContext
from envs import losses as L
from envs.base_env import BaseEnv, NonFiniteLossError  # noqa: F401 (re-exported: tests import it from here)
from models import automtl as A
from models import build_network

PHASES = ('pretrain', 'weights', 'policy', 'retrain')
EVAL_MODES = ('eval_pretrain', 'eval_hard', 'eval_fixed')
POLICY_FORMAT = 'automtl-policy/1'


@dataclass
class AutoMTLState:
    """The counters a checkpoint keeps; the temperature follows from `policy_steps`."""
    current_iter: int = 0
    policy_steps: int = 0
    weight_steps: int = 0
    stage: str = 'pretrain'  # pretrain | policy_train | retrain
    best_value: float = 0.0
    temperature: float = 5.0


def automtl_options(opt: dict) -> dict:
    """The `automtl:` section with its defaults (config/schema.py fills them; this also serves tests' dicts)."""
    defaults = {'pretrain_iters': 10000, 'policy_iters': 100, 'weight_iters': 400, 'policy_lr': 0.01,
                'weight_lr': None, 'reg_lambda': 0.0005, 'reg_scale': A.PAPER_SCALE, 'reg_noise': True,
                'init_temp': A.policy.TAU0, 'temp_decay': A.policy.TAU_DECAY,
                'temp_update_iters': A.policy.POLICY_UPDATE_ITERS, 'share_num': 0, 'step_per_task': False,
                'policy_lr_reset_freq': None}
    nullable = ('weight_lr', 'policy_lr_reset_freq')
    given = {k: v for k, v in (opt.get('automtl') or {}).items() if k in defaults and (v is not None or k in nullable)}
    return {**defaults, **given}


class AutoMTLEnv(BaseEnv):
    """The AutoMTL env: same checkpoint, resume and validation contract as AdaShareEnv (engine/run.py)."""

    method = 'automtl'

    def __init__(self, opt: dict, device: torch.device, dist: DistContext | None = None, is_train: bool = True,
                 seg_class_weights: torch.Tensor | None = None, seed: int | None = None):
        self.opt = opt
        self.tasks: list[str] = list(opt['tasks'])
        self.dataset: str = opt['dataload']['dataset']
        self.quirks: dict = opt.get('quirks', {}) or {}
        self.options = automtl_options(opt)
        self.architecture = 'automtl'
        network = build_network('automtl', opt['backbone'], list(opt['tasks_num_class']),
                                head_channels=opt.get('head_channels', 1024) or 1024)
        if is_train and opt.get('backbone_weights'):
            raise ValueError('backbone_weights is not supported with architecture automtl yet (docs/automtl.md)')
        super().__init__(network, opt['paths']['checkpoint_dir'], opt['exp_name'], device, dist, is_train)
        self.state = AutoMTLState(temperature=float(self.options['init_temp']))
        self.depth_weights = A.depth_weights(self.network.conv_depths).to(device)
        self.set_seg_class_weights(seg_class_weights)
        self.fixed_policies: list[torch.Tensor] | None = None
        self.last_weights: list[torch.Tensor] | None = None
        self.masked_losses = bool((opt.get('speed') or {}).get('masked_losses', False))
        if is_train:
            self.define_optimizers('pretrain')

    # ---------------------------------------------------------------- the method's interface (envs/__init__.py)
    @classmethod
    def loop_schedule(cls, opt: dict, loaders: dict):
        """The policy-learning counts: pre-train iterations, then the (p, w) alternation to total_iters."""
        from engine.validation import LoopConfig
        o, train = automtl_options(opt), opt['train']
        return LoopConfig(total_iters=int(train['total_iters']), warm_up_iters=int(o['pretrain_iters']),
                          weight_iter_alternate=int(o['weight_iters']), alpha_iter_alternate=int(o['policy_iters']),
                          print_freq=int(train['print_freq']), val_freq=int(train['val_freq']))

    def policy_loop(self, **parts):
        """The loop of train_policy.py (engine/automtl_loop.py)."""
        return AutoMTLLoop(env=self, **parts)

    def prepare_policy_learning(self, resumed: bool) -> None:
        """Nothing to restore beyond the resume state (the original AdaShare `train.resume` has no analogue)."""

    def close_policy_learning(self, logger, schedule) -> None:
        """The closing note: the argmax policy's parameter count of the final logits (the sampled one differs)."""
        if not self.is_main:
            return
        choices = self.argmax_policy()
        count = A.paper_parameter_count(self.network, choices)
        line = (f'automtl: final logits, argmax policy: {count.relative * 100:+.1f} % conv parameters vs '
                f'{len(self.tasks)} single-task backbones (the retrained architecture is sampled: re-train.py)')
        logger.note(line)
        print(line)

    @classmethod
    def learns_policy(cls, opt: dict) -> bool:
        return True

    @classmethod
    def policy_file_path(cls, opt: dict, policy_iter: str, seed: int) -> str:
        """`<checkpoint_dir>/<exp_name>/automtl_policyIter<it>_rs<seed:04d>.json` (never a .pickle)."""
        return os.path.join(opt['paths']['checkpoint_dir'], opt['exp_name'],
                            f'automtl_policy{ckpt.policy_label(policy_iter, seed)}.json')

    def policy_file(self, seed: int) -> str:
        return self.policy_file_path(self.opt, str(self.opt['train']['policy_iter']), seed)

    @classmethod
    def read_policy_file(cls, path: str, num_tasks: int | None = None, num_convs: int | None = None,
                         hint: str | None = None) -> list[torch.Tensor]:
        """The choices of an AutoMTL policy file, checked: the format tag, one vector per task, values 0/1/2."""
        if not os.path.exists(path):
            raise ckpt.PolicyNotFoundError('\n'.join([f'AutoMTL policy file not found: {path}']
                                                     + ([f'  {hint}'] if hint else [])))
        try:
            with open(path, encoding='utf-8') as handle:
                data = json.load(handle)
        except (OSError, ValueError) as err:
            raise ckpt.PolicyFileError(f'{path}: not a readable AutoMTL policy file ({err})') from None
        if not isinstance(data, dict) or data.get('format') != POLICY_FORMAT:
            raise ckpt.PolicyFileError(f'{path}: expected an AutoMTL policy file (format {POLICY_FORMAT!r})')
        choices = data.get('choices')
        if not isinstance(choices, list) or not choices or any(
                not isinstance(c, list) or any(v not in (0, 1, 2) or isinstance(v, bool) for v in c) for c in choices):
            raise ckpt.PolicyFileError(f'{path}: "choices" must be one list of 0/1/2 per task')
        if num_tasks is not None and len(choices) != num_tasks:
            raise ckpt.PolicyFileError(f'{path}: {len(choices)} task policies, the config has {num_tasks} tasks')
        if num_convs is not None and any(len(c) != num_convs for c in choices):
            raise ckpt.PolicyFileError(f'{path}: expected {num_convs} choices per task (one per conv)')
        return [torch.tensor(c, dtype=torch.int64) for c in choices]

    def load_policy_file(self, path: str, hint: str | None = None) -> list[torch.Tensor]:
        return self.read_policy_file(path, len(self.tasks), self.network.num_convs, hint)

    def read_policy_source(self, path: str) -> dict | None:
        try:
            with open(path, encoding='utf-8') as handle:
                record = json.load(handle).get('source')
        except (OSError, ValueError, AttributeError):
            return None
        return record if isinstance(record, dict) else None

    def save_policy_file(self, path: str, policies: Sequence[torch.Tensor], source: dict | None,
                         seed: int | None = None) -> None:
        """One JSON file, written atomically: choices, one-hot rows, conv names, the source record."""
        data = {'format': POLICY_FORMAT, 'tasks': self.tasks, 'options': list(A.OPTION_NAMES),
                'backbone': self.opt['backbone'], 'conv_names': self.network.conv_names, 'seed': seed,
                'share_num': int(self.options['share_num']),
                'choices': [[int(v) for v in p.tolist()] for p in policies],
                'one_hot': [A.one_hot(p).int().tolist() for p in policies], 'source': source}
        ckpt.atomic_write_json(path, data)

    def sample_policy(self, seed: int) -> list[torch.Tensor]:
        """The authors' seeded sampling from softmax(logits), the first share_num convs forced to shared."""
        return A.sample_choices([lg.detach() for lg in self.policy_logits()], seed,
                                force_shared=int(self.options['share_num']))

    def policy_probabilities(self) -> list[torch.Tensor]:
        """softmax(logits) per task, [num_convs, 3] (the forced bottom rows: shared)."""
        probs = [A.softmax_weights(lg.detach()).cpu() for lg in self.policy_logits()]
        k = int(self.options['share_num'])
        for p in probs:
            p[:k] = torch.tensor([1.0, 0.0, 0.0])
        return probs

    def format_policy(self, policies: Sequence[torch.Tensor], probabilities: Sequence[torch.Tensor] | None = None
                      ) -> str:
        """A table: one line per task, one letter per conv (S shared, T task-specific, K skip), and counts."""
        letters = 'STK'
        width = max(len(t) for t in self.tasks)
        lines = [f'{"conv":<{width}}  ' + ''.join(str(i % 10) for i in range(self.network.num_convs))]
        for t, task in enumerate(self.tasks):
            row = policies[t].tolist()
            counts = ', '.join(f'{row.count(i)} {name}' for i, name in enumerate(A.OPTION_NAMES))
            lines.append(f'{task:<{width}}  ' + ''.join(letters[v] for v in row) + f'  ({counts})')
        count = A.paper_parameter_count(self.network, list(policies))
        lines.append(f'S shared, T task-specific, K skip; conv parameters {count.relative * 100:+.1f} % vs '
                     f'{len(self.tasks)} single-task backbones (paper count)')
        return '\n'.join(lines)

    def policy_record(self, policies: Sequence[torch.Tensor]) -> dict:
        return {'policy_sha256': ckpt.logits_digest({f'task{t + 1}_logits': A.one_hot(p)
                                                     for t, p in enumerate(policies)})}

    def retrain_notes(self, policies: Sequence[torch.Tensor], logger, tag: str) -> None:
        """AutoMTL has no idle task: every task computes its whole path whatever it chooses."""

    def start_from_scratch(self, init_state: dict) -> None:
        """Post-train from the freshly seeded weights (the paper: "trained from scratch")."""
        self.network.load_state_dict(init_state)
        self.state = AutoMTLState(temperature=float(self.options['init_temp']))

    def start_retrain(self) -> None:
        self.state.stage = 'retrain'
        self.define_optimizers('retrain')

    def policy_json(self, policies: Sequence[torch.Tensor]) -> dict:
        return {f'task{t + 1}_policy': [int(v) for v in p.tolist()] for t, p in enumerate(policies)}

    def model_size(self, input_hw: Sequence[int], policies: Sequence[torch.Tensor] | None) -> dict:
        return self.size_of(self.network, input_hw, policies)

    @staticmethod
    def size_of(network, input_hw: Sequence[int], policies: Sequence[torch.Tensor] | None) -> dict:
        """deploy.flops.automtl_model_size: both parameter conventions and the hard forward's GFLOPs."""
        from deploy.flops import automtl_model_size
        return automtl_model_size(network, input_hw, policies)

    def benchmark_policy_steps(self) -> str:
        """Put the env where policy steps run (deploy/method_benchmark.py); returns the phase name."""
        self.start_policy_train()
        return 'policy'

    def benchmark_fixed_policy(self, seed: int) -> str:
        """A hard policy sampled from uniform logits (each option p = 1/3) for timing evaluation."""
        self.set_fixed_policy(A.sample_choices([torch.zeros_like(lg) for lg in self.policy_logits()], seed))
        return 'eval_fixed'

    @classmethod
    def write_figures(cls, opt: dict, checkpoint_path: str, out: str, exp_ids: Sequence[int] = (),
                      loss_txt: str | None = None) -> list[str]:
        """tools/plots.py: the policy figure (three options per conv, one panel per task) of a checkpoint's
        logits, one per sampled architecture of `exp_ids` (policy_rs<seed>.png) or without (policy.png), and
        the training curves of loss.txt."""
        from reporting.plots import checkpoint_option_probabilities, plot_automtl_policy, plot_training_curves
        checkpoint = ckpt.load_checkpoint(checkpoint_path)
        tasks = list(opt['tasks'])
        probs = checkpoint_option_probabilities(checkpoint, len(tasks))
        names = None
        step = int(checkpoint.get('iter', 0))
        title = f'{os.path.basename(checkpoint_path)} (iter {step}): softmax of the logits'
        os.makedirs(out, exist_ok=True)
        paths = []
        policy_iter = str(opt['train']['policy_iter'])
        for e in exp_ids or [None]:
            choices, name = None, 'policy.png'
            if e is not None:
                seed = int(opt['seed'][e])
                path = cls.policy_file_path(opt, policy_iter, seed)
                choices = cls.read_policy_file(path, num_tasks=len(tasks))
                with open(path, encoding='utf-8') as handle:
                    names = json.load(handle).get('conv_names')
                name = f'policy_rs{seed:04d}.png'
            paths.append(plot_automtl_policy(probs, choices, tasks, names, os.path.join(out, name),
                                             title=title + ('' if e is None else f', sampled seed {opt["seed"][e]}')))
        if loss_txt is not None:
            curves = os.path.join(out, 'training_curves.png')
            plot_training_curves(loss_txt, curves)
            paths.append(curves)
        return paths

    # ---------------------------------------------------------------- properties
    @property
    def lambdas(self) -> list[float]:
        return [float(x) for x in self.opt['lambdas']]

    @property
    def has_policy(self) -> bool:
        return True

    @property
    def temperature(self) -> float:
        return self.state.temperature

    def current_temperature(self) -> float:
        o = self.options
        return A.temperature(self.state.policy_steps, float(o['init_temp']), float(o['temp_decay']),
                             int(o['temp_update_iters']))

    def policy_logits(self) -> list[torch.Tensor]:
        return self.network.policy_logits()

    def argmax_policy(self) -> list[torch.Tensor]:
        k = int(self.options['share_num'])
        out = []
        for lg in self.policy_logits():
            choices = A.hard_choices(lg).cpu()
            choices[:k] = A.SHARED
            out.append(choices)
        return out

    def set_seg_class_weights(self, weights: torch.Tensor | None) -> None:
        self.seg_class_weights = weights.to(self.device) if weights is not None else None

    def set_fixed_policy(self, policies: Sequence[torch.Tensor]) -> None:
        """Fix the sampled choices used by 'retrain' and 'eval_fixed'."""
        if len(policies) != len(self.tasks):
            raise ValueError(f'policy has {len(policies)} tasks, the config has {len(self.tasks)} ({self.tasks})')
        for t, p in enumerate(policies):
            self.network.route(t, A.HARD, p)  # checks length and values
        self.fixed_policies = [torch.as_tensor(p, dtype=torch.int64).cpu() for p in policies]

    # ---------------------------------------------------------------- optimisers (docs/automtl.md "Training")
    def define_optimizers(self, stage: str) -> None:
        """pretrain: Adam on the weights; policy_train: SGD on the weights + Adam on the logits; retrain: Adam."""
        train, o = self.opt['train'], self.options
        weights = self.network.network_parameters()
        lr = float(train['lr'])
        self.optimizers, self.schedulers = {}, {}
        if stage == 'policy_train':
            weight_lr = float(o['weight_lr']) if o['weight_lr'] is not None else lr
            self.optimizers['weights'] = torch.optim.SGD(weights, lr=weight_lr, momentum=0.9, weight_decay=1e-4)
            self.optimizers['alphas'] = torch.optim.Adam(self.policy_logits(), lr=float(o['policy_lr']),
                                                         weight_decay=5e-4)
            return
        self.optimizers['weights'] = torch.optim.Adam(weights, lr=lr, betas=(0.5, 0.999), weight_decay=1e-4)
        freq, rate = train.get('decay_lr_freq'), train.get('decay_lr_rate')
        if stage == 'retrain' and freq is not None and rate is not None:
            self.schedulers['weights'] = torch.optim.lr_scheduler.StepLR(self.optimizers['weights'], int(freq),
                                                                          float(rate))

    def start_policy_train(self) -> None:
        """First policy-train iteration: the stage's optimisers (the pre-train Adam state is dropped)."""
        self.state.stage = 'policy_train'
        self.define_optimizers('policy_train')

    def apply_phase_freezing(self, fix_bn: bool = False) -> None:
        """Logits never train outside policy steps; retraining freezes them (they are not used)."""
        for p in self.policy_logits():
            p.requires_grad_(False)
        for p in self.network.network_parameters():
            p.requires_grad_(True)

    def _trainable(self, logits: bool) -> None:
        for p in self.policy_logits():
            p.requires_grad_(logits)
        for p in self.network.network_parameters():
            p.requires_grad_(not logits)

    # ---------------------------------------------------------------- forward, losses
    def soft_weights(self) -> list[torch.Tensor]:
        """One Gumbel-Softmax sample per task at the current temperature; forced bottom rows one-hot shared."""
        tau = self.current_temperature()
        k = int(self.options['share_num'])
        out = []
        for lg in self.policy_logits():
            w = A.gumbel_softmax_weights(lg, tau)
            if k:
                w = torch.cat([A.one_hot(torch.zeros(min(k, w.shape[0]), dtype=torch.int64)).to(w), w[k:]])
            out.append(w)
        return out

    def forward(self, phase: str, task: int | None = None) -> list[torch.Tensor]:
        img = self.batch['img'].float()
        if phase in ('pretrain', 'eval_pretrain'):
            mode, policy = A.PRETRAIN, [None] * len(self.tasks)
        elif phase in ('weights', 'policy'):
            mode, policy = A.SOFT, self.soft_weights()
            self.last_weights = policy
        elif phase == 'eval_hard':
            mode, policy = A.HARD, self.argmax_policy()
        elif phase in ('retrain', 'eval_fixed'):
            if self.fixed_policies is None:
                raise RuntimeError('no fixed policy set: call set_fixed_policy() (from a policy file) first')
            mode, policy = A.HARD, self.fixed_policies
        else:
            raise ValueError(f"unknown phase '{phase}', expected one of {PHASES + EVAL_MODES}")
        tasks = range(len(self.tasks)) if task is None else [task]
        return [self.network.forward_task(img, t, mode, policy[t]).float() for t in tasks]

    def task_loss(self, task: str, pred: torch.Tensor) -> torch.Tensor:
        return L.task_loss(task, pred, self.batch, self.dataset, class_weights=self.seg_class_weights,
                           decode_normals=bool(self.quirks.get('decode_normals', False)), masked=self.masked_losses)

    def regulariser(self, t: int) -> torch.Tensor:
        """L_reg of task t (0-based) over the searchable rows (the forced bottom rows are constant)."""
        k = int(self.options['share_num'])
        o = self.options
        return A.policy_regulariser(self.policy_logits()[t][k:], self.depth_weights[k:], self.current_temperature(),
                                    scale=float(o['reg_scale']), noise=bool(o['reg_noise']))

    def optimize(self, phase: str) -> dict[str, Any]:
        """One step of `phase` on the current batch; returns detached losses.

        Paper (default): one loss sum_t lambda_t L_t (+ lambda_reg sum_t L_reg(t) in policy steps), one step.
        automtl.step_per_task (the authors' code): per task, lambda_t L_t + lambda_reg L_reg(t), one step each.
        """
        if phase not in PHASES:
            raise ValueError(f"unknown phase '{phase}', expected one of {PHASES}")
        policy = phase == 'policy'
        self._trainable(logits=policy)
        optimizer = self.optimizers['alphas' if policy else 'weights']
        params = self.policy_logits() if policy else self.network.network_parameters()
        lam_reg = float(self.options['reg_lambda'])
        report: dict[str, Any] = {}
        groups = [[t] for t in range(len(self.tasks))] if self.options['step_per_task'] else \
            [list(range(len(self.tasks)))]
        total = torch.zeros((), device=self.device)
        for group in groups:
            outputs = self.forward(phase, task=group[0]) if len(group) == 1 else self.forward(phase)
            loss = torch.zeros((), device=self.device)
            for t, out in zip(group, outputs):
                value = self.task_loss(self.tasks[t], out)
                report[self.tasks[t]] = {'total': value.detach()}
                loss = loss + self.lambdas[t] * value
            if phase in ('weights', 'policy'):
                reg = sum(self.regulariser(t) for t in group)
                report.setdefault('reg', {'total': torch.zeros((), device=self.device)})
                report['reg']['total'] = report['reg']['total'] + reg.detach()
                if policy:
                    loss = loss + lam_reg * reg
            if not self._check_finite(loss, phase):
                return report
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.sync_gradients([p for p in params if p.grad is not None])
            optimizer.step()
            total = total + loss.detach()
        report['total'] = {'total': total}
        if policy:
            self.state.policy_steps += 1
        elif phase == 'weights':
            self.state.weight_steps += 1
        self.state.temperature = self.current_temperature()
        scheduler = self.schedulers.get('weights')
        if scheduler is not None and phase == 'retrain':
            scheduler.step()
        freq = self.options['policy_lr_reset_freq']
        if freq and self.state.stage == 'policy_train' and self.state.current_iter % int(freq) == 0:
            for group in self.optimizers['alphas'].param_groups:
                group['lr'] = 0.001  # the authors' "delete if not needed" block (docs/automtl.md)
        return report

    def _check_finite(self, loss: torch.Tensor, phase: str) -> bool:
        finite = bool(torch.isfinite(loss.detach())) and all(bool(torch.isfinite(lg).all())
                                                              for lg in self.policy_logits())
        if finite:
            return True
        where = f'iteration {self.state.current_iter}, {phase} step: non-finite loss or logits'
        if (self.opt.get('train') or {}).get('nonfinite', 'stop') == 'skip':
            print(f'warning: {where}: batch skipped (train.nonfinite: skip)')
            return False
        raise NonFiniteLossError(f'{where}. Stopped before the update. Set train.nonfinite: skip to skip such '
                                 f'batches instead.')

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, loader: Iterable, mode: str, eval_iter: int = 10, extras: bool = False,
                 cosine: bool = False) -> dict:
        """Evaluate `mode` ('eval_pretrain' | 'eval_hard' | 'eval_fixed') on at most eval_iter+1 batches."""
        if mode not in EVAL_MODES:
            raise ValueError(f"unknown evaluation mode '{mode}', expected one of {EVAL_MODES}")
        was_training = self.network.training
        self.eval()
        metrics = self.metrics_for(extras, cosine)
        for batch_idx, batch in enumerate(loader):
            if 0 <= eval_iter < batch_idx:
                break
            self.set_inputs(batch)
            metrics.update(self.forward(mode), self.batch)
        if was_training:
            self.train()
        return metrics.compute()

    def validate_retrain(self, loader: Iterable, eval_iter: int = 10) -> dict:
        return self.validate(loader, 'eval_fixed', eval_iter, extras=False, cosine=True)

    # ---------------------------------------------------------------- checkpoints and resume
    def _payload(self, extra: dict | None) -> dict:
        payload = {'state': asdict(self.state), 'method': 'automtl',
                   'schedulers': {k: s.state_dict() for k, s in self.schedulers.items()}}
        payload.update(extra or {})
        return payload

    def save_label(self, label: str, extra: dict | None = None) -> str | None:
        keep = bool((self.opt.get('train') or {}).get('save_optimizer', True))
        return self.save(label, self.state.current_iter, self.state.temperature, extra=self._payload(extra),
                         with_optimizers=keep)

    def save_resume(self, path: str, extra: dict) -> None:
        self.save_to(path, self.state.current_iter, self.state.temperature, extra=self._payload(extra))

    def load_resume(self, path: str) -> dict:
        payload = ckpt.load_checkpoint(path, map_location=self.device)
        ckpt.load_state_strict(self.network, payload['mtl-net'], source=path)
        self.state = AutoMTLState(**payload['state'])
        self.define_optimizers(self.state.stage)
        for name, optimizer in self.optimizers.items():
            if name in payload:
                optimizer.load_state_dict(payload[name])
        for name, scheduler in self.schedulers.items():
            if name in payload.get('schedulers', {}):
                scheduler.load_state_dict(payload['schedulers'][name])
        return payload

    def apply_new_hyperparameters(self) -> None:
        """--resume_with_changes: the stage's learning rates from the new config (optimiser states kept)."""
        current = self.optimizers
        scheduler_states = {k: s.state_dict() for k, s in self.schedulers.items()}
        self.define_optimizers(self.state.stage)
        fresh, self.optimizers = self.optimizers, current
        for name, optimizer in current.items():
            for group, new in zip(optimizer.param_groups, fresh[name].param_groups):
                group['lr'] = new['lr']
        self.schedulers = {}
        if self.state.stage == 'retrain':
            train = self.opt['train']
            if train.get('decay_lr_freq') is not None and train.get('decay_lr_rate') is not None:
                sched = torch.optim.lr_scheduler.StepLR(current['weights'], int(train['decay_lr_freq']),
                                                        float(train['decay_lr_rate']))
                if 'weights' in scheduler_states:
                    sched.last_epoch = scheduler_states['weights']['last_epoch']
                self.schedulers['weights'] = sched
        self.options = automtl_options(self.opt)
        self.state.temperature = self.current_temperature()

    def load_label(self, label: str, strict: bool = False, hint: str | None = None) -> int:
        state = self.load_network(label, strict=strict, hint=hint)
        self.state.current_iter = int(state.get('iter', 0))
        if 'temp' in state:
            self.state.temperature = float(state['temp'])
        return self.state.current_iter
