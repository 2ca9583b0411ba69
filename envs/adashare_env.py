"""AdaShareEnv: policy logits, losses, curriculum, temperature and the alternating optimisation.

One env serves every phase (docs/original.md §3.6, §5, §6, §7):
  'warmup'  - shared full network, Adam on the weights, task losses only;
  'weights' - Gumbel-Softmax gates per task, SGD on the weights (train1);
  'policy'  - Gumbel-Softmax gates, Adam on the logits, task losses + regularisers (train2);
  'retrain' - fixed 0/1 policies, Adam on the weights.
The `speed:` options (engine/speed.py) act in `run_network` (autocast, memory format, compiled module)
and in `optimize` (the fp16 GradScaler); with their defaults the float32 numerics are the original's.
The `weighting:` method (envs/weighting, docs/weighting.md) turns the task losses of every phase but
'policy' into gradients; the default `equal` is the original's Σ λ_t·L_t.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import torch

from envs import losses as L
from envs.base_env import BaseEnv, NonFiniteLossError  # noqa: F401 (re-exported: tests import it from here)
from envs.weighting import WeightingContext, build_weighting, combined_backward, lambda_sum
from engine import checkpoint as ckpt
from models import build_network
from models import policy as P
from engine.device import DistContext, all_reduce_mean_
from engine.pretrained import load_backbone_weights
from engine.speed import SpeedOptions, apply_speed_options

PHASES = ('warmup', 'weights', 'policy', 'retrain')


@dataclass
class TrainState:
    """Counters of the training loop; saved with every checkpoint so a run can resume."""
    current_iter: int = 0
    current_iter_w: int = 0
    current_iter_a: int = 0
    p_epoch: int = 0
    flag: str = 'update_w'
    alternation_started: bool = False
    best_value: float = 0.0
    temperature: float = 5.0


class AdaShareEnv(BaseEnv):
    """The AdaShare multi-task env (the original's BlockDropEnv)."""

    def __init__(self, opt: dict, device: torch.device, dist: DistContext | None = None,
                 is_train: bool = True, seg_class_weights: torch.Tensor | None = None, seed: int | None = None):
        self.opt = opt
        self.tasks: list[str] = list(opt['tasks'])
        self.dataset: str = opt['dataload']['dataset']
        self.quirks: dict = opt.get('quirks', {}) or {}
        for task in self.tasks:
            if task in ('keypoint', 'edge') and self.dataset != 'Taskonomy':
                raise ValueError(f"task '{task}' needs the Taskonomy dataset, not {self.dataset}")
        train_opt = opt.get('train', {}) or {}
        self.architecture: str = opt.get('architecture', 'adashare') or 'adashare'
        network = build_network(self.architecture, opt['backbone'], list(opt['tasks_num_class']),
                                init_method=train_opt.get('init_method', opt.get('init_method', 'equal')),
                                init_neg_logits=opt.get('init_neg_logits'),
                                skip_layer=opt.get('skip_layer', 0) or 0,
                                head_channels=opt.get('head_channels', 1024) or 1024)
        if is_train and opt.get('backbone_weights'):
            # Before BaseEnv: DDP broadcasts rank 0's weights, and the optimisers see the loaded values.
            load_backbone_weights(network, opt['backbone'], opt['backbone_weights'])
        super().__init__(network, opt['paths']['checkpoint_dir'], opt['exp_name'], device, dist, is_train)
        # Speed options (engine/speed.py): `train_network` is the network or its compiled wrapper (same
        # parameters); checkpoints always use `self.network`. The scaler is a pass-through unless fp16.
        self.speed = SpeedOptions.from_config(opt)
        self.train_network = apply_speed_options(self.network, self.speed, device)
        self.scaler = self.speed.grad_scaler(device)
        # speed.masked_losses: host-sync-free loss forms, not bit-equal to the original (envs/losses.py).
        self.masked_losses = bool((opt.get('speed') or {}).get('masked_losses', False))
        self.state = TrainState(temperature=float(train_opt.get('init_temp', 5.0)))
        self.decay_temp = float(train_opt.get('decay_temp', 0.965))
        self.set_seg_class_weights(seg_class_weights)
        self.fixed_policies: list[torch.Tensor] | None = None
        self.last_gates: list[torch.Tensor] | None = None
        # `seed`: the run's seed (re-train.py passes seed[exp_id]); it seeds PCGrad's task order.
        # An evaluation-only config (test.py on a released checkpoint) may carry no lambdas or seeds: the
        # weighting then never runs, so neutral values stand in.
        lambdas = tuple(self.lambdas) if is_train or 'lambdas' in opt else (1.0,) * len(self.tasks)
        seeds = opt.get('seed') or [0]
        context = WeightingContext(len(self.tasks), lambdas,
                                   seed=int(seeds[0] if seed is None else seed),
                                   steps_per_epoch=int(train_opt.get('val_freq') or 1))
        self.weighting = build_weighting(opt.get('weighting') or 'equal', context, opt.get('weighting_args'))
        self.weighting.to(device)
        if is_train:
            self.define_optimizers(policy_learning=False)
            self.define_schedulers(policy_learning=False)

    def set_seg_class_weights(self, weights: torch.Tensor | None) -> None:
        """Class weights of the seg CE (Taskonomy's semseg_prior_factor), on the env's device."""
        self.seg_class_weights = weights.to(self.device) if weights is not None else None

    # ---------------------------------------------------------------- properties
    @property
    def lambdas(self) -> list[float]:
        return [float(x) for x in self.opt['lambdas']]

    # ---------------------------------------------------------------- the method's interface (envs/__init__.py)
    # What the scripts, tools/flops and the policy source ask of a method; AutoMTLEnv answers the same calls.
    @classmethod
    def loop_schedule(cls, opt: dict, loaders: dict):
        """The policy-learning counts; an alternation block is one pass over train1 / train2 unless set."""
        from engine.validation import LoopConfig
        train_opt = opt['train']
        if train_opt.get('weight_iter_alternate') is None:
            train_opt['weight_iter_alternate'] = len(loaders['train1'])
        if train_opt.get('alpha_iter_alternate') is None:
            train_opt['alpha_iter_alternate'] = len(loaders['train2'])
        return LoopConfig(total_iters=int(train_opt['total_iters']), warm_up_iters=int(train_opt['warm_up_iters']),
                          weight_iter_alternate=int(train_opt['weight_iter_alternate']),
                          alpha_iter_alternate=int(train_opt['alpha_iter_alternate']),
                          print_freq=int(train_opt['print_freq']), val_freq=int(train_opt['val_freq']))

    def best_after(self, schedule) -> int:
        """Iterations after the warm-up before `best` may be saved (docs/original.md §1.1)."""
        from engine.validation import best_threshold_blocks
        return best_threshold_blocks(self.opt) * int(self.opt['curriculum_speed']) * \
            (schedule.weight_iter_alternate + schedule.alpha_iter_alternate)

    def policy_loop(self, **parts):
        """AdaShare's loop of train_policy.py (engine/policy_learning.py)."""
        from engine.policy_learning import PolicyLoop
        return PolicyLoop(env=self, best_after=self.best_after(parts['schedule']),
                          policy_on=bool(self.opt.get('policy', True)), fix_bn=bool(self.opt.get('fix_BN', False)),
                          **parts)

    def prepare_policy_learning(self, resumed: bool) -> None:
        """The original's `train.resume`: weights, iter and temp from `which_iter`; fresh logits and optimisers."""
        train_opt = self.opt['train']
        if not resumed and train_opt.get('resume'):
            self.load_label(train_opt['which_iter'],
                            hint=f'policy learning writes it: python train_policy.py --config {self.opt["_source"]}')
            self.network.reset_logits()
            self.define_optimizers(policy_learning=False)
            self.define_schedulers(policy_learning=False)
        self.apply_phase_freezing(bool(self.opt.get('fix_BN', False)))

    def close_policy_learning(self, logger, schedule) -> None:
        """Idle tasks, and a note when no `best` was written."""
        from engine.policy_learning import note_idle_tasks
        from engine.validation import report_policy_best
        if self.is_main:
            note_idle_tasks(logger, self)
            report_policy_best(self, self.opt, schedule.warm_up_iters + self.best_after(schedule))

    @classmethod
    def learns_policy(cls, opt: dict) -> bool:
        """AdaShare learns a policy; the paper baselines are fixed architectures."""
        return (opt.get('architecture', 'adashare') or 'adashare') == 'adashare'

    @classmethod
    def policy_file_path(cls, opt: dict, policy_iter: str, seed: int) -> str:
        return ckpt.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter, seed)

    def policy_file(self, seed: int) -> str:
        return self.policy_file_path(self.opt, str(self.opt['train']['policy_iter']), seed)

    @classmethod
    def read_policy_file(cls, path: str, hint: str | None = None) -> list[torch.Tensor]:
        return ckpt.load_policy(path, hint=hint)

    def load_policy_file(self, path: str, hint: str | None = None) -> list[torch.Tensor]:
        return ckpt.load_policy(path, hint=hint)

    def read_policy_source(self, path: str) -> dict | None:
        return ckpt.load_policy_source(path)

    def save_policy_file(self, path: str, policies, source: dict | None, seed: int | None = None) -> None:
        ckpt.save_policy(path, policies, self.tasks, source=source)

    def sample_policy(self, seed: int) -> list[torch.Tensor]:
        """The original's numpy sampling (the caller seeded numpy with the run's seed)."""
        return P.sample_policy_numpy([lg.detach() for lg in self.policy_logits()])

    def policy_probabilities(self) -> list[torch.Tensor]:
        return self.execute_probabilities()

    def format_policy(self, policies, probabilities=None) -> str:
        return ckpt.format_policy_table(policies, self.tasks, probabilities=probabilities)

    def policy_record(self, policies) -> dict:
        return {'policy_sha256': ckpt.logits_digest({f'task{t + 1}_logits': p for t, p in enumerate(policies)})}

    def retrain_notes(self, policies, logger, tag: str) -> None:
        idle = ckpt.idle_tasks(policies, self.tasks)
        if idle:
            logger.note(tag + ckpt.idle_task_warning(idle, len(policies[0])))

    def start_from_scratch(self, init_state: dict) -> None:
        self.network.load_state_dict(init_state)
        self.state.temperature = float(self.opt['train']['init_temp'])

    def start_retrain(self) -> None:
        self.define_optimizers(policy_learning=False)
        self.define_schedulers(policy_learning=False)

    def policy_json(self, policies) -> dict:
        return {f'task{t + 1}_policy': pol.tolist() for t, pol in enumerate(policies)}

    def model_size(self, input_hw, policies) -> dict:
        return self.size_of(self.network, input_hw, policies)

    @staticmethod
    def size_of(network, input_hw, policies) -> dict:
        """deploy.flops.model_size: # Params, total parameters and GFLOPs (tools/flops.py, test.py)."""
        from deploy.flops import model_size
        return model_size(network, input_hw, policies)

    def benchmark_policy_steps(self) -> str:
        """Put the env where policy steps run (deploy/method_benchmark.py); returns the phase name."""
        self.start_alternation()
        self.fix_w()
        self.free_alpha()
        return 'policy'

    def benchmark_fixed_policy(self, seed: int) -> str:
        """A random hard policy (each block executed with p = 0.5) for timing evaluation; returns the mode."""
        generator = torch.Generator().manual_seed(seed)
        rows = self.network.num_policy_rows
        executes = [(torch.rand(rows, generator=generator) < 0.5).long() for _ in self.tasks]
        self.set_fixed_policy([torch.stack([e, 1 - e], dim=1) for e in executes])
        return 'eval_fixed'

    @property
    def has_policy(self) -> bool:
        """True for AdaShare's gated network; the paper baselines have no policy (fixed architectures)."""
        return bool(self.network.arch_parameters())

    @property
    def temperature(self) -> float:
        return self.state.temperature

    def num_train_layers(self) -> int | None:
        """Curriculum window: how many of the top policy rows are gated now (docs/original.md §4.3)."""
        return P.num_train_layers(self.state.p_epoch, int(self.opt['curriculum_speed']),
                                  bool(self.opt.get('is_curriculum', False)))

    def policy_logits(self) -> list[torch.Tensor]:
        return self.network.policy_logits()

    def execute_probabilities(self) -> list[torch.Tensor]:
        """Per task, softmax(logits)[:, 0] (every task, fixing the original's display bug)."""
        return [P.execute_probabilities(logits.detach()).cpu() for logits in self.policy_logits()]

    # ---------------------------------------------------------------- optimisers (docs/original.md §6)
    def define_optimizers(self, policy_learning: bool) -> None:
        train_opt = self.opt['train']
        groups = [{'params': self.network.task_specific_parameters(), 'lr': float(train_opt['lr'])},
                  {'params': self.network.backbone_parameters(), 'lr': float(train_opt['backbone_lr'])}]
        fusion = self.network.fusion_parameters() if hasattr(self.network, 'fusion_parameters') else []
        if fusion:
            # A third group only where it exists, so AdaShare's optimiser state keeps the original's layout.
            multiplier = float((self.opt.get('baseline') or {}).get('fusion_lr_mult', 1.0))
            groups.append({'params': fusion, 'lr': float(train_opt['backbone_lr']) * multiplier})
        # Learnable loss weights (UW's log-variances) train with the network; no group for the other methods.
        groups += self.weighting.weight_parameter_groups(float(train_opt['lr']))
        if policy_learning:
            self.optimizers['weights'] = torch.optim.SGD(groups, momentum=0.9, weight_decay=1e-4)
        else:
            self.optimizers['weights'] = torch.optim.Adam(groups, betas=(0.5, 0.999), weight_decay=1e-4)
        # The original honours policy_lr only with all_chosen; 0.01 equals every shipped value.
        init_method = train_opt.get('init_method', 'equal')
        policy_lr = float(train_opt['policy_lr']) if init_method == 'all_chosen' else 0.01
        if self.has_policy:
            self.optimizers['alphas'] = torch.optim.Adam(self.network.arch_parameters(), lr=policy_lr,
                                                         weight_decay=5e-4)

    def define_schedulers(self, policy_learning: bool) -> None:
        train_opt = self.opt['train']
        freq_key, rate_key = ('policy_decay_lr_freq', 'policy_decay_lr_rate') if policy_learning \
            else ('decay_lr_freq', 'decay_lr_rate')
        if policy_learning and self.quirks.get('weight_lr_schedule_after_warmup', False):
            freq_key, rate_key = 'decay_lr_freq', 'decay_lr_rate'
        freq, rate = train_opt.get(freq_key), train_opt.get(rate_key)
        if freq is not None and rate is not None:
            self.schedulers['weights'] = torch.optim.lr_scheduler.StepLR(
                self.optimizers['weights'], step_size=int(freq), gamma=float(rate))
        elif policy_learning:
            # Faithful (docs/original.md §12.2 item 19): the warm-up StepLR stays bound to the discarded Adam,
            # so the SGD learning rate is constant during the alternation.
            self.schedulers.pop('weights', None)

    def start_alternation(self) -> None:
        """First alternation iteration: SGD on the weights and a fresh Adam on the logits."""
        self.define_optimizers(policy_learning=True)
        self.define_schedulers(policy_learning=True)
        self.state.alternation_started = True

    # ---------------------------------------------------------------- freezing
    def fix_w(self) -> None:
        for p in self.network.network_parameters():
            p.requires_grad_(False)

    def free_w(self, fix_bn: bool = False) -> None:
        for p in self.network.network_parameters():
            p.requires_grad_(True)
        if fix_bn:
            backbone = {id(p) for p in self.network.backbone_parameters()}
            for name, p in self.network.named_parameters():
                # Faithful: the downsample BNs (ds.<s>.1) do not contain 'bn' and stay trainable.
                if id(p) in backbone and 'bn' in name:
                    p.requires_grad_(False)

    def fix_alpha(self) -> None:
        for p in self.network.arch_parameters():
            p.requires_grad_(False)

    def free_alpha(self) -> None:
        for p in self.network.arch_parameters():
            p.requires_grad_(True)

    def decay_temperature(self) -> None:
        self.state.temperature *= self.decay_temp

    # ---------------------------------------------------------------- policies
    def set_fixed_policy(self, policies: list[torch.Tensor]) -> None:
        """Fix the 0/1 `[P, 2]` policies used by 'retrain' and evaluation."""
        rows = self.network.num_policy_rows
        if len(policies) != len(self.tasks):
            raise ValueError(f"policy has {len(policies)} tasks, the config has {len(self.tasks)} ({self.tasks})")
        for t, pol in enumerate(policies):
            if tuple(pol.shape) != (rows, 2):
                raise ValueError(f"task{t + 1}_policy has shape {tuple(pol.shape)}, expected ({rows}, 2) "
                                 f"for {self.opt['backbone']} with skip_layer {self.network.skip_layer}")
        self.fixed_policies = [pol.to(self.device) for pol in policies]

    def _pad(self, gates: torch.Tensor, num_gated: int | None) -> torch.Tensor:
        return P.pad_gates(gates, self.network.num_blocks, num_gated)

    def gumbel_gates(self, hard: bool = False) -> list[torch.Tensor]:
        n = self.num_train_layers()
        return [self._pad(P.gumbel_gates(logits, self.temperature, hard=hard), n)
                for logits in self.policy_logits()]

    def sampled_gates(self, hard_sampling: bool = False) -> list[torch.Tensor]:
        """Discrete gates for validation during the alternation (docs/original.md §4.4: numpy, per call)."""
        logits = [lg.detach() for lg in self.policy_logits()]
        policies = P.hard_policy(logits) if hard_sampling else P.sample_policy_numpy(logits)
        n = self.num_train_layers()
        return [self._pad(pol.float().to(self.device), n) for pol in policies]

    def fixed_gates(self) -> list[torch.Tensor]:
        if self.fixed_policies is None:
            raise RuntimeError('no fixed policy set: call set_fixed_policy() (from a policy pickle) first')
        return [self._pad(pol.float(), None) for pol in self.fixed_policies]

    # ---------------------------------------------------------------- forward and losses
    def run_network(self, img: torch.Tensor, gates: list[torch.Tensor] | None = None,
                    skip_unselected: bool = False) -> list[torch.Tensor]:
        """One network call with the speed options: compiled in training (validation's policy-dependent
        paths would recompile per sampled policy), autocast, input memory format. Outputs are float32 so
        that losses and metrics are computed as in the original (`.float()` is a no-op without amp)."""
        network = self.train_network if self.network.training else self.network
        with self.speed.autocast(self.device):
            if self.has_policy:
                outputs = network(self.speed.format_input(img), gates, skip_unselected=skip_unselected)
            else:  # a baseline: one fixed architecture, no gates
                outputs = network(self.speed.format_input(img))
        return [out.float() for out in outputs]

    def forward(self, phase: str) -> list[torch.Tensor]:
        img = self.batch['img'].float()
        train_opt = self.opt.get('train', {}) or {}
        use_policy = bool(self.opt.get('policy', True))
        if not self.has_policy:
            if phase not in PHASES + ('eval_policy', 'eval_fixed', 'eval_shared'):
                raise ValueError(f"unknown phase '{phase}'")
            self.last_gates = None
            return self.run_network(img)
        if phase == 'warmup' or (phase in ('weights', 'policy', 'eval_policy') and not use_policy) \
                or phase == 'eval_shared':
            self.last_gates = None
            return self.run_network(img)
        if phase in ('weights', 'policy'):
            self.last_gates = self.gumbel_gates(hard=bool(train_opt.get('hard_sampling', False)))
            return self.run_network(img, self.last_gates)
        # Evaluation with 0/1 gates runs only the selected blocks and shares common prefixes:
        # exact in eval mode (docs/original.md §0.5). In training it is the `true_skip` quirk (BN statistics).
        if phase == 'eval_policy':
            self.last_gates = self.sampled_gates(bool(train_opt.get('hard_sampling', False)))
            return self.run_network(img, self.last_gates, skip_unselected=not self.network.training)
        if phase in ('retrain', 'eval_fixed'):
            self.last_gates = self.fixed_gates()
            skip = bool(self.quirks.get('true_skip', False)) if phase == 'retrain' else not self.network.training
            return self.run_network(img, self.last_gates, skip_unselected=skip)
        raise ValueError(f"unknown phase '{phase}', expected one of {PHASES + ('eval_policy', 'eval_fixed', 'eval_shared')}")

    def task_losses(self, outputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = {}
        decode = bool(self.quirks.get('decode_normals', False))
        for task, pred in zip(self.tasks, outputs):
            losses[task] = L.task_loss(task, pred, self.batch, self.dataset, class_weights=self.seg_class_weights,
                                       decode_normals=decode, masked=self.masked_losses)
        return losses

    def regularisers(self) -> dict[str, Any]:
        """Sparsity and sharing losses of docs/original.md §5 on the policy logits."""
        logits = self.policy_logits()
        diff = bool(self.opt.get('diff_sparsity_weights', False))
        is_sharing = bool(self.opt.get('is_sharing', False))
        out: dict[str, Any] = {}
        if self.opt.get('is_sparse', False):
            total, per_task = L.sparsity_loss(logits, self.num_train_layers(), diff, is_sharing,
                                              paper=bool(self.quirks.get('paper_sparsity', False)))
            out['sparsity'] = {'total': total, **{f'task{t + 1}': v for t, v in enumerate(per_task)}}
        if is_sharing:
            out['hamming'] = {'total': L.sharing_loss(
                logits, diff, paper_weights=bool(self.quirks.get('paper_sharing_weights', False)))}
        return out

    def optimize(self, phase: str) -> dict[str, Any]:
        """One optimisation step of `phase` on the current batch; returns detached losses."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase '{phase}', expected one of {PHASES}")
        outputs = self.forward(phase)
        task_losses = self.task_losses(outputs)
        ordered = [task_losses[task] for task in self.tasks]
        # The policy steps keep the paper's loss; gradient methods combine gradients, not this loss, which
        # is then only logged and checked.
        combine = phase != 'policy' and self.weighting.uses_gradients
        loss = lambda_sum(self.lambdas, ordered) if phase == 'policy' or combine else self.weighting.loss(ordered)
        report: dict[str, Any] = {task: {'total': v.detach()} for task, v in task_losses.items()}
        if phase == 'policy':
            # Added in the original's order (hamming, then sparsity); the logged total includes them as well.
            regs = self.regularisers()
            train_opt = self.opt['train']
            if 'hamming' in regs:
                loss = loss + float(train_opt['reg_w_hamming']) * regs['hamming']['total']
            if 'sparsity' in regs:
                loss = loss + float(train_opt['reg_w']) * regs['sparsity']['total']
            for key, group in regs.items():
                report[key] = {k: v.detach() for k, v in group.items()}
        report['total'] = {'total': loss.detach()}
        auxiliary = self.network.auxiliary_loss() if hasattr(self.network, 'auxiliary_loss') else None
        penalty = None
        if auxiliary is not None:
            # Sluice's orthogonality penalty, weighted by baseline.sluice_orthogonality (logged apart); never
            # weighted by the method, and outside the gradient combination.
            weight = float((self.opt.get('baseline') or {}).get('sluice_orthogonality', 0.0))
            penalty = weight * auxiliary
            loss = loss + penalty
            report['orthogonality'] = {'total': auxiliary.detach()}
        if not self._check_finite(loss, task_losses, phase):
            return report
        if phase == 'policy':
            optimizer, params, scheduler = self.optimizers['alphas'], self.network.arch_parameters(), None
        else:
            optimizer = self.optimizers['weights']
            params = self.network.network_parameters() + self.weighting.weight_parameters()
            scheduler = self.schedulers.get('weights')
        optimizer.zero_grad(set_to_none=True)
        # With fp16 the scaler multiplies the loss, unscales the gradients in step() and skips steps with
        # inf/NaN gradients; otherwise these are plain backward() and step().
        if combine:
            shared, others = self._split_shared([p for p in params if p.requires_grad])
            combined_backward(self.weighting, ordered, shared, others, self.scaler, penalty)  # rank-averaged
        else:
            self.scaler.scale(loss).backward()
            self.sync_gradients(params)
        self.scaler.step(optimizer)
        self.scaler.update()
        if scheduler is not None:
            scheduler.step()
        return report

    def _split_shared(self, params: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(shared, other) trainable parameters under this step's gates (docs/weighting.md).

        Under DDP each rank draws its own Gumbel noise, so the decision is taken on the gates averaged over
        the ranks: every rank must combine the same parameter set, or their weights drift apart."""
        gates = self.last_gates
        if gates is not None and self.is_distributed:
            gates = [all_reduce_mean_(g.detach().float().clone()) for g in gates]
        shared = {id(p) for p in self.network.shared_parameters(gates)}
        return [p for p in params if id(p) in shared], [p for p in params if id(p) not in shared]

    def _check_finite(self, loss: torch.Tensor, task_losses: dict, phase: str) -> bool:
        """Numerical guard: True if the step may proceed (one host sync per step).

        `train.nonfinite: stop` (default) raises NonFiniteLossError naming the iteration, the task
        and the loss before anything is stepped or saved, so the last good checkpoint stays
        intact; `skip` drops the batch with a warning.
        """
        finite = torch.isfinite(loss.detach())
        logits = self.policy_logits()
        if logits:
            finite = finite & torch.stack([torch.isfinite(lg.detach()).all() for lg in logits]).all()
        if bool(finite):
            return True
        bad = [f'{task} loss = {float(value.detach())}' for task, value in task_losses.items()
               if not torch.isfinite(value.detach()).all()]
        bad += [f'task{t + 1}_logits non-finite' for t, lg in enumerate(logits) if not torch.isfinite(lg).all()]
        if not bad:
            bad = [f'total loss = {float(loss)} (a regulariser)']
        where = f'iteration {self.state.current_iter}, {phase} step: ' + '; '.join(bad)
        if (self.opt.get('train') or {}).get('nonfinite', 'stop') == 'skip':
            print(f'warning: {where}: batch skipped (train.nonfinite: skip)')
            return False
        names = self.batch.get('name')
        files = f' (batch files: {", ".join(map(str, names))})' if isinstance(names, (list, tuple)) and names else ''
        folder = os.path.dirname(self.checkpoint_file('latest'))
        saved = sorted(n for n in (os.listdir(folder) if os.path.isdir(folder) else []) if n.endswith('_model.pth.tar'))
        kept = f'the checkpoints saved so far ({", ".join(saved)}) are kept' if saved else 'no checkpoint was saved yet'
        raise NonFiniteLossError(f'{where}{files}. Stopped before the update; {kept}. '
                                 f'Set train.nonfinite: skip to skip such batches instead.')

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, loader: Iterable, mode: str, eval_iter: int = 10, extras: bool = False,
                 cosine: bool = False) -> dict:
        """Evaluate `mode` ('eval_shared' | 'eval_policy' | 'eval_fixed') on at most eval_iter+1 batches.

        eval_iter = -1 evaluates the whole loader (test.py); 10 is the original's validation.
        """
        was_training = self.network.training
        self.eval()
        metrics = self.metrics_for(extras, cosine)
        for batch_idx, batch in enumerate(loader):
            if 0 <= eval_iter < batch_idx:
                break
            self.set_inputs(batch)
            outputs = self.forward(mode)
            metrics.update(outputs, self.batch)
        if was_training:
            self.train()
        return metrics.compute()

    def validate_retrain(self, loader: Iterable, eval_iter: int = 10) -> dict:
        """re-train.py's validation of the fixed policy, with the original's keys: the sn cosine_similarity
        (which the Taskonomy score uses) but not the training validation's extras (docs/parity.md)."""
        return self.validate(loader, 'eval_fixed', eval_iter, extras=False, cosine=True)

    # ---------------------------------------------------------------- checkpoints
    def _training_payload(self, extra: dict | None) -> dict:
        """Our keys beside the original ones: counters, schedulers, the fp16 scaler ({} otherwise)."""
        payload = {'state': asdict(self.state),
                   'schedulers': {k: s.state_dict() for k, s in self.schedulers.items()},
                   'scaler': self.scaler.state_dict(),
                   'weighting': self.weighting.state_dict()}
        payload.update(extra or {})
        return payload

    def save_label(self, label: str, extra: dict | None = None) -> str | None:
        """A snapshot such as `best` or `warmup`; `train.save_optimizer: false` leaves its optimiser states
        out (evaluation and retraining read only the weights). `latest` is written as the resume state."""
        keep = bool((self.opt.get('train') or {}).get('save_optimizer', True))
        return self.save(label, self.state.current_iter, self.state.temperature,
                         extra=self._training_payload(extra), with_optimizers=keep)

    def save_resume(self, path: str, extra: dict) -> None:
        """The resume state: a checkpoint with the counters, schedulers and the caller's extras."""
        self.save_to(path, self.state.current_iter, self.state.temperature, extra=self._training_payload(extra))

    def load_resume(self, path: str) -> dict:
        """Restore weights, optimisers, schedulers and counters saved by save_resume()."""
        payload = ckpt.load_checkpoint(path, map_location=self.device)
        ckpt.load_state_strict(self.network, payload['mtl-net'], source=path)
        self.state = TrainState(**payload['state'])
        self.define_optimizers(policy_learning=self.state.alternation_started)
        self.schedulers = {}
        self.define_schedulers(policy_learning=False)
        if self.state.alternation_started:
            self.define_schedulers(policy_learning=True)
        for name, optimizer in self.optimizers.items():
            if name in payload:
                optimizer.load_state_dict(payload[name])
        for name, scheduler in self.schedulers.items():
            if name in payload.get('schedulers', {}):
                scheduler.load_state_dict(payload['schedulers'][name])
        if self.scaler.is_enabled() and payload.get('scaler'):
            self.scaler.load_state_dict(payload['scaler'])
        if 'weighting' in payload:
            self.weighting.load_state_dict(payload['weighting'])
        return payload

    def apply_phase_freezing(self, fix_bn: bool) -> None:
        """requires_grad as the current alternation flag wants it (weights or logits trainable)."""
        if self.state.alternation_started and self.state.flag == 'update_alpha':
            self.fix_w()
            self.free_alpha()
        else:
            self.fix_alpha()
            self.free_w(fix_bn)

    def load_label(self, label: str, strict: bool = False, hint: str | None = None) -> int:
        """Load weights, `iter` and `temp` like the original `load()`; returns the iteration."""
        state = self.load_network(label, strict=strict, hint=hint)
        self.state.current_iter = int(state.get('iter', 0))
        if 'temp' in state:
            self.state.temperature = float(state['temp'])
        return self.state.current_iter
