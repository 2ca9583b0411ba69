"""The configuration: one schema for every YAML key, loading, validation, defaults and the reference docs.

The config stays a plain nested dict (`opt['train']['lr']`, as in the original). `SCHEMA` below is the
single source of truth: every key of docs/original.md §1, our extension keys and the `quirks:` switches, each with
its type/range, default, the scripts that require it and a one-line meaning. Adding a key is one
`Key(...)` line; validation, defaults, path resolution, `format_options` and `schema_markdown` all
follow from it.

    opt = load_config('yamls/adashare/nyu_v2_3task.yml', 'train_policy')
    python tools/config.py --markdown                       # the configuration reference
    python tools/config.py yamls/x.yml --script re-train    # validate a file, print the options
"""
from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPTS = ('train_policy', 're-train', 'test')
TRAIN = ('train_policy',)
RETRAIN = ('re-train',)
TRAIN_RETRAIN = ('train_policy', 're-train')
ALL = SCRIPTS

TASKS = ('seg', 'sn', 'depth', 'keypoint', 'edge')
DATASETS = ('NYU_v2', 'CityScapes', 'Taskonomy')
DATASET_TASKS = {'NYU_v2': ('seg', 'sn', 'depth'), 'CityScapes': ('seg', 'depth'), 'Taskonomy': TASKS}
# Residual blocks L of the Deeplab-ResNets (the policy has L - skip_layer rows per task); any registry
# backbone: backbone_blocks().
BACKBONE_BLOCKS = {'ResNet10': 4, 'ResNet18': 8, 'ResNet34': 16, 'ResNet101': 33}
# Output channels the losses and metrics of these tasks assume.
FIXED_TASK_CHANNELS = {'sn': 3, 'depth': 1, 'keypoint': 1, 'edge': 1}
SPLITS = ('train', 'train1', 'train2', 'val', 'test', 'test_small')
MAX_SEED = 2 ** 32 - 1  # numpy's seeding limit
# `architecture:` values: AdaShare's gated network, then the paper's baselines (models/baselines registry;
# tests/test_config.py checks the two lists agree).
ARCHITECTURES = ('adashare', 'single_task', 'multi_task', 'cross_stitch', 'sluice', 'nddr', 'mtan')
# Baselines that mix features between task columns need at least two tasks.
MULTI_COLUMN = ('cross_stitch', 'sluice', 'nddr', 'mtan')
# `weighting:` values (envs/weighting registry; tests/test_weighting.py checks the two lists agree).
WEIGHTING_METHODS = ('equal', 'uw', 'gradnorm', 'dwa', 'pcgrad', 'cagrad', 'nash_mtl', 'imtl', 'famo')


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, the key, the value and the expectation."""

    def __init__(self, message: str, errors: Sequence[str] | None = None):
        super().__init__(message)
        self.errors = list(errors) if errors is not None else [message]


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """The config path does not exist (both a ConfigError and a FileNotFoundError)."""


# ----------------------------------------------------------------------------------------- value checks
class Check:
    """Type/range check of one value: `problem(value)` is None when fine, else the text after 'key = value: '."""

    def describe(self) -> str:
        raise NotImplementedError

    def problem(self, value: Any) -> str | None:
        return None if self.accepts(value) else f'expected {self.describe()}'

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


class Boolean(Check):
    def describe(self) -> str:
        return 'true or false'

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Integer(Check):
    lo: int | None = None
    hi: int | None = None

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f'an integer in [{self.lo}, {self.hi}]'
        if self.lo is not None:
            return f'an integer >= {self.lo}'
        return 'an integer'

    def accepts(self, value: Any) -> bool:
        return (_is_int(value) and (self.lo is None or value >= self.lo)
                and (self.hi is None or value <= self.hi))


@dataclass(frozen=True)
class Number(Check):
    """A finite int or float (bool refused); bounds gt/ge below, le above."""
    gt: float | None = None
    ge: float | None = None
    le: float | None = None

    def describe(self) -> str:
        low = f'({self.gt:g}' if self.gt is not None else f'[{self.ge:g}' if self.ge is not None else None
        if low is not None and self.le is not None:
            return f'a number in {low}, {self.le:g}]'
        if self.gt is not None:
            return f'a number > {self.gt:g}'
        if self.ge is not None:
            return f'a number >= {self.ge:g}'
        if self.le is not None:
            return f'a number <= {self.le:g}'
        return 'a number'

    def accepts(self, value: Any) -> bool:
        return (_is_number(value) and (self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.le is None or value <= self.le))

    def problem(self, value: Any) -> str | None:
        if self.accepts(value):
            return None
        if isinstance(value, str) and _looks_numeric(value):
            return f'expected {self.describe()}, not a string (remove the quotes)'
        return f'expected {self.describe()}'


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Text(Check):
    """A non-empty string: a `name` (no path separators, e.g. exp_name or a checkpoint label) or a `path`."""
    kind: str = 'name'
    example: str = ''

    def describe(self) -> str:
        if self.kind == 'path':
            return 'a non-empty path string'
        example = f' such as {self.example}' if self.example else ''
        return f'a non-empty name{example} (a string without / or \\)'

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, str) or not value.strip():
            return False
        return self.kind == 'path' or not (set(value) & {'/', '\\'} or value in ('.', '..'))


@dataclass(frozen=True)
class Choice(Check):
    """One of `choices`; `refused` maps known-but-unsupported values to the reason."""
    choices: tuple[str, ...]
    refused: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return 'one of ' + ', '.join(repr(c) for c in self.choices)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and value in self.refused:
            return f'{self.refused[value]}; expected {self.describe()}'
        return super().problem(value)


@dataclass(frozen=True)
class BackboneName(Check):
    """A name of the backbone registry (models.backbones), which builds on the meta device."""

    def describe(self) -> str:
        return ('a backbone of the registry: ResNet10, ResNet18, ResNet34, ResNet101, WRN-<depth>-<width> (e.g. '
                'WRN-16-8), MobileNetV2[-<width multiplier>], tv:resnet18|34|50|101')

    def accepts(self, value: Any) -> bool:
        return self.problem(value) is None

    def problem(self, value: Any) -> str | None:
        from models.backbones import find_family  # torch only where a backbone is checked
        try:
            find_family(value)
        except ValueError:
            return f'expected {self.describe()}'
        try:
            backbone_blocks(value)
        except (ValueError, ImportError) as err:
            return f'{err}'
        return None


def backbone_blocks(name: str) -> int:
    """L, the gateable blocks of a registry backbone (ValueError for an unknown name)."""
    if name in BACKBONE_BLOCKS:
        return BACKBONE_BLOCKS[name]
    from models.backbones import num_gated_blocks  # torch only where a non-default backbone is named
    return num_gated_blocks(name)


@dataclass(frozen=True)
class ListOf(Check):
    item: Check

    def describe(self) -> str:
        return f'a non-empty list, each item {self.item.describe()}'

    def accepts(self, value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(self.item.accepts(v) for v in value)

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, list) or not value:
            return f'expected {self.describe()}'
        for index, item in enumerate(value):
            if not self.item.accepts(item):
                return f'expected {self.describe()} (item {index} = {_show(item)} is not)'
        return None


class Mapping_(Check):
    """A mapping with string keys (its entries are checked by a cross-key rule)."""

    def describe(self) -> str:
        return 'a mapping of name: value'

    def accepts(self, value: Any) -> bool:
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)


@dataclass(frozen=True)
class Nullable(Check):
    """`inner` or null (an empty YAML value)."""
    inner: Check

    def describe(self) -> str:
        return f'{self.inner.describe()} or null'

    def accepts(self, value: Any) -> bool:
        return value is None or self.inner.accepts(value)

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None
        inner = self.inner.problem(value)
        return None if inner is None else f'{inner} or null'


# ----------------------------------------------------------------------------------------- the schema
REQUIRED = object()  # sentinel: no default


@dataclass(frozen=True)
class Derived:
    """Default copied from another key (e.g. retrain_total_iters = total_iters)."""
    source: str


Condition = tuple  # (dotted key, value): required only when that key has that value


@dataclass(frozen=True)
class Key:
    """One config key. `required_by` maps a script to None (always required) or a Condition."""
    name: str
    check: Check
    meaning: str
    default: Any = REQUIRED
    required_by: Mapping[str, Condition | None] = field(default_factory=dict)
    path: bool = False          # relative values are resolved against the repository root
    unused: bool = False        # accepted for compatibility with the original yamls, read by nothing
    modules: tuple[str, ...] = ()  # quirks: the modules whose behaviour the switch changes

    @property
    def section(self) -> str:
        return self.name.rpartition('.')[0]

    @property
    def leaf(self) -> str:
        return self.name.rpartition('.')[2]


def needs(scripts: Sequence[str], when: Condition | None = None) -> dict[str, Condition | None]:
    """`required_by` for these scripts, optionally only when `when = (key, value)` holds."""
    return {script: when for script in scripts}


ALL_CHOSEN = ('train.init_method', 'all_chosen')

SCHEMA: tuple[Key, ...] = (
    # --- top level (docs/original.md §1.1)
    Key('exp_name', Text(), 'Sub-folder under every paths.* entry; policy learning, re-train and test of one '
        'experiment share it.', required_by=needs(ALL)),
    Key('seed', ListOf(Integer(0, MAX_SEED)), 'train_policy seeds with seed[0]; re-train/test use seed[exp_id] '
        '(--exp_ids indexes this list) for seeding and the policy label rs%04d.', required_by=needs(ALL)),
    Key('backbone', BackboneName(), 'Gated backbone (docs/backbones.md). The paper\'s Deeplab-ResNets: ResNet10 '
        '(extension, BasicBlock [1,1,1,1]), ResNet18 [2,2,2,2], ResNet34 [3,4,6,3], ResNet101 (Bottleneck '
        '[3,4,23,3]). Extensions: WRN-<depth>-<width> (Wide-ResNet, depth = 6n + 4, e.g. WRN-16-8), MobileNetV2 or '
        'MobileNetV2-<width multiplier> (only its residual blocks are gated), tv:resnet18|34|50|101 (torchvision '
        'ResNets dilated to output stride 8; needs torchvision). All give features at 1/8 resolution.',
        required_by=needs(ALL)),
    Key('backbone_weights', Nullable(Text('path')), 'Extension: a local file with the backbone\'s ImageNet state '
        'dict in the family\'s own key names (torchvision\'s for tv:resnet* and MobileNetV2), loaded into every '
        'backbone column before training; classifier keys are ignored, any other missing, unexpected or '
        'mis-shaped key is an error naming the file. null = the random init.', default=None, path=True),
    Key('tasks', ListOf(Choice(TASKS)), 'Ordered tasks; the order fixes the task ids (task1, task2, ...) and the '
        'order of lambdas and tasks_num_class.', required_by=needs(ALL)),
    Key('tasks_num_class', ListOf(Integer(1)), 'Output channels of each task head (seg: classes, sn 3, depth/'
        'keypoint/edge 1).', required_by=needs(ALL)),
    Key('lambdas', ListOf(Number(ge=0)), 'Task-loss weights, one per task, in weight and policy steps and in '
        'retraining.', required_by=needs(TRAIN_RETRAIN)),
    Key('policy_model', Choice(('task-specific',), refused={'instance-specific': 'not supported yet '
        '(instance-specific policies are not implemented)'}), 'task-specific: one policy per task (every '
        'shipped config).', required_by=needs(ALL)),
    Key('policy', Boolean(), 'After warm-up, True runs the backbone per task with Gumbel-Softmax gates and '
        'validates sampled policies; False keeps the shared full network.', required_by=needs(TRAIN)),
    Key('init_neg_logits', Nullable(Number()), 'Skip-column logit of init_method all_chosen (e.g. -10).',
        default=None, required_by=needs(TRAIN_RETRAIN, when=ALL_CHOSEN)),
    Key('is_sparse', Boolean(), 'Adds train.reg_w * sparsity loss to the policy loss.', required_by=needs(TRAIN)),
    Key('is_sharing', Boolean(), 'Adds train.reg_w_hamming * sharing (Hamming) loss to the policy loss; also '
        'forces the unweighted sparsity form.', required_by=needs(TRAIN)),
    Key('skip_layer', Integer(0), 'The first skip_layer blocks are never gated; the policy has L - skip_layer '
        'rows per task (must be < the backbone\'s block count L).', required_by=needs(ALL)),
    Key('is_curriculum', Boolean(), 'Gate only the last p_epoch // curriculum_speed + 1 blocks; False gates all.',
        required_by=needs(TRAIN)),
    Key('curriculum_speed', Integer(1), 'Alternation epochs per extra unlocked block; also in the "best" '
        'threshold (read even when is_curriculum is False).', required_by=needs(TRAIN)),
    Key('fix_BN', Boolean(), 'Freeze the affine parameters of backbone BNs whose name contains "bn" (not the '
        'downsample BNs); running statistics still update.', required_by=needs(TRAIN_RETRAIN)),
    Key('diff_sparsity_weights', Boolean(), 'Hamming weights (i+1)/P instead of 1 (and the depth-weighted '
        'sparsity when is_sharing is False).', required_by=needs(TRAIN)),
    Key('retrain_from_pl', Boolean(), 'True: retraining starts from the policy_iter policy-learning weights; '
        'False: from the fresh seeded initialisation.', required_by=needs(RETRAIN)),
    Key('head_channels', Integer(1), 'Extension: width of the hidden convs of every ASPP head branch '
        '(1024 in the original).', default=1024),
    Key('architecture', Choice(ARCHITECTURES), 'Extension: the network. adashare = the gated backbone '
        'with learned policies; the paper baselines (same backbone, heads, losses, lambdas, optimiser and '
        'schedule, trained from scratch by re-train.py): single_task (one backbone per task), multi_task (one '
        'shared backbone = the all-execute policy), cross_stitch, sluice, nddr, mtan (docs/baselines.md; these '
        'four need a Deeplab-ResNet backbone).',
        default='adashare'),
    Key('baseline.sluice_orthogonality', Number(ge=0), 'Extension: weight of the Sluice orthogonality penalty '
        'between the two subspaces of every block output, added to the training loss (architecture sluice).',
        default=0.01),
    Key('baseline.fusion_lr_mult', Number(gt=0), 'Extension: learning rate of the fusion modules (cross-stitch '
        'and Sluice units, NDDR layers, MTAN attention) = train.backbone_lr x this factor (NDDR-CNN used 100 '
        'for its layers; 1 = the same parameter set as every other model).', default=1.0),
    # --- paths (docs/original.md §1.2)
    Key('weighting', Choice(WEIGHTING_METHODS), 'Extension: how the task losses of warm-up, the weight steps of '
        'policy learning and retraining (every architecture) become gradients; the policy steps keep the paper\'s '
        'loss. equal = the fixed lambdas (the original); uw, dwa, famo weight the losses; gradnorm, pcgrad, cagrad, '
        'nash_mtl, imtl combine the per-task gradients of the shared parameters. Every method weights '
        'lambda_t * L_t (docs/weighting.md; arguments below the table).', default='equal'),
    Key('weighting_args', Nullable(Mapping_()), 'Extension: hyper-parameters of the weighting method, '
        'e.g. {T: 2} for dwa; null or absent = its defaults (the table below the reference).', default=None),
    Key('paths.log_dir', Text('path'), '`<log_dir>/<exp_name>/`: opt.txt, loss.txt, tensorboard events.',
        required_by=needs(ALL), path=True),
    Key('paths.result_dir', Text('path'), '`<result_dir>/<exp_name>/`: results (test.py writes its JSON there).',
        required_by=needs(ALL), path=True),
    Key('paths.checkpoint_dir', Text('path'), '`<checkpoint_dir>/<exp_name>/`: `<label>_model.pth.tar` and '
        '`policy<label>.pickle`.', required_by=needs(ALL), path=True),
    # --- dataload (docs/original.md §1.3)
    Key('dataload.dataset', Choice(DATASETS), 'Picks the loader, the CE ignore index, the depth mask rule and '
        'the reference metrics.', required_by=needs(ALL)),
    Key('dataload.dataroot', Text('path'), 'Dataset root: the json index of the splits and the data files it '
        'lists.', required_by=needs(ALL), path=True),
    Key('dataload.crop_h', Integer(1), 'Random-crop height of the train/train1/train2 splits.',
        required_by=needs(TRAIN_RETRAIN)),
    Key('dataload.crop_w', Integer(1), 'Random-crop width of the train/train1/train2 splits.',
        required_by=needs(TRAIN_RETRAIN)),
    Key('dataload.small_res', Boolean(), 'CityScapes only: evaluation size 128x256 instead of 256x512, and the '
        'reference metrics; ignored for the other datasets.', default=False,
        required_by=needs(ALL, when=('dataload.dataset', 'CityScapes'))),
    Key('dataload.eval_h', Nullable(Integer(1)), 'Extension: height of evaluation images; null = the dataset '
        'default (NYU 480, CityScapes 256 or 128 with small_res, Taskonomy 256).', default=None),
    Key('dataload.eval_w', Nullable(Integer(1)), 'Extension: width of evaluation images; null = the dataset '
        'default (NYU 640, CityScapes 512 or 256 with small_res, Taskonomy 256).', default=None),
    Key('dataload.num_workers', Integer(0), 'Extension: DataLoader worker processes (2 in the original).',
        default=2),
    Key('dataload.pin_memory', Nullable(Boolean()), 'Extension: page-locked batches for asynchronous host-to-GPU '
        'copies; null = pin whenever CUDA is available.', default=None),
    Key('dataload.prefetch_factor', Nullable(Integer(1)), 'Extension: batches each worker prepares ahead; null = '
        'the PyTorch default (2); ignored with num_workers 0.', default=None),
    # --- train (docs/original.md §1.4)
    Key('train.batch_size', Integer(1), 'Global batch of every train loader and of the validation loader used '
        'during training (test.py uses 1); split across DDP ranks.', required_by=needs(TRAIN_RETRAIN)),
    Key('train.total_iters', Integer(1), 'Length of the policy-learning loop (warm-up + weight + policy '
        'iterations); default of retrain_total_iters.', required_by=needs(TRAIN_RETRAIN)),
    Key('train.warm_up_iters', Integer(1), 'Iterations 1 .. warm_up_iters-1 are warm-up; must be < '
        'total_iters.', required_by=needs(TRAIN)),
    Key('train.retrain_total_iters', Integer(1), 'Length of the re-train loop.',
        default=Derived('train.total_iters')),
    Key('train.lr', Number(gt=0), 'LR of the task heads (Adam in warm-up/retrain, SGD in the alternation phase).',
        required_by=needs(TRAIN_RETRAIN)),
    Key('train.backbone_lr', Number(gt=0), 'LR of the backbone (same optimisers).',
        required_by=needs(TRAIN_RETRAIN)),
    Key('train.policy_lr', Nullable(Number(gt=0)), 'Adam LR of the policy logits, honoured only with '
        'init_method all_chosen (otherwise 0.01, as hard-coded in the original).', default=None,
        required_by=needs(TRAIN_RETRAIN, when=ALL_CHOSEN)),
    Key('train.reg_w', Nullable(Number(ge=0)), 'lambda_sp: weight of the sparsity loss.', default=None,
        required_by=needs(TRAIN, when=('is_sparse', True))),
    Key('train.reg_w_hamming', Nullable(Number(ge=0)), 'lambda_sh: weight of the sharing (Hamming) loss.',
        default=None, required_by=needs(TRAIN, when=('is_sharing', True))),
    Key('train.print_freq', Integer(1), 'Print/log training losses every print_freq iterations.',
        required_by=needs(TRAIN_RETRAIN)),
    Key('train.val_freq', Integer(1), 'Validation period in warm-up and in retraining (the alternation phase '
        'validates at each weight->policy switch).', required_by=needs(TRAIN_RETRAIN)),
    Key('train.decay_lr_freq', Nullable(Integer(1)), 'StepLR step size of the weight optimiser (stepped every '
        'weight update); with decay_lr_rate, both or neither.', default=None),
    Key('train.decay_lr_rate', Nullable(Number(gt=0)), 'StepLR gamma of the weight optimiser; with '
        'decay_lr_freq, both or neither.', default=None),
    Key('train.policy_decay_lr_freq', Nullable(Integer(1)), 'StepLR step size for the SGD weight optimiser of the '
        'alternation phase; with policy_decay_lr_rate, both or neither.', default=None),
    Key('train.policy_decay_lr_rate', Nullable(Number(gt=0)), 'StepLR gamma for the SGD weight optimiser of the '
        'alternation phase; with policy_decay_lr_freq, both or neither.', default=None),
    Key('train.decay_temp_freq', Nullable(Integer(0)), 'Unused by the original and by this code (the '
        'temperature decays once per policy phase).', default=None, unused=True),
    Key('train.init_temp', Number(gt=0), 'Initial Gumbel-Softmax temperature tau0.',
        required_by=needs(TRAIN_RETRAIN)),
    Key('train.decay_temp', Number(gt=0, le=1), 'tau <- tau * decay_temp after every policy phase.',
        required_by=needs(TRAIN_RETRAIN)),
    Key('train.resume', Boolean(), 'Resume policy learning from the which_iter checkpoint (the logits are '
        're-initialised, as in the original).', required_by=needs(TRAIN)),
    Key('train.which_iter', Nullable(Text(example='warmup')), 'Checkpoint label to resume from.', default=None,
        required_by={'train_policy': ('train.resume', True), 're-train': ('train.retrain_resume', True)}),
    Key('train.retrain_resume', Boolean(), 'Resume retraining from the which_iter checkpoint and its policy '
        'pickle.', required_by=needs(RETRAIN)),
    Key('train.policy_iter', Text(example='best or latest'), 'Label of the policy-learning checkpoint the policy '
        'is sampled from; part of the pickle and retrain checkpoint names.', required_by=needs(('re-train', 'test'))),
    Key('train.init_method', Choice(('equal', 'random', 'all_chosen')), 'Logit init: equal (0.5, 0.5), random '
        '(1e-3 * N(0,1)), all_chosen (0, init_neg_logits).', required_by=needs(ALL)),
    Key('train.hard_sampling', Boolean(), 'hard= of the training Gumbel-Softmax; True also samples discrete '
        'policies by argmax.', required_by=needs(TRAIN_RETRAIN)),
    Key('train.weight_iter_alternate', Nullable(Integer(1)), 'Weight iterations per alternation epoch; null = '
        'the length of the train1 loader.', default=None),
    Key('train.alpha_iter_alternate', Nullable(Integer(1)), 'Policy iterations per alternation epoch; null = '
        'the length of the train2 loader.', default=None),
    # --- reliability (extensions; defaults keep the original cadence)
    Key('train.auto_resume', Boolean(), 'Extension: re-running an interrupted train_policy.py/re-train.py command '
        'continues exactly from its resume_state file (one file with `latest`: weights, optimisers, schedulers, temperature, curriculum, '
        'alternation position, best score, data order, RNG); False (or --fresh) starts over.', default=True),
    Key('train.latest_freq', Nullable(Integer(1)), 'Extension: also save `latest` and the resume state every '
        'latest_freq iterations; null = the original cadence (every validation).', default=None),
    Key('train.save_optimizer', Boolean(), 'Extension: False leaves the optimiser states out of the `best` and '
        '`warmup` checkpoints (evaluation, retraining and the original\'s resume read only their weights), about '
        'a half (SGD) to two thirds (Adam) of each file; `latest`, which is also the resume state, always keeps '
        'them. True = the original\'s files.', default=True),
    Key('train.nonfinite', Choice(('stop', 'skip')), 'Extension: a non-finite loss or logit stops the run (the last '
        'good checkpoint is kept), or skips that batch.', default='stop'),
    # --- speed (issue 7; every default keeps the original float32 numerics)
    Key('speed.amp', Nullable(Choice(('bf16', 'fp16'))), 'Extension: mixed precision. Network forwards (training '
        'and validation) run under torch.autocast in bfloat16 or float16; losses, metrics, the policy logits '
        'and the optimiser state stay float32; fp16 adds a GradScaler (saved in the resume state). null = '
        'float32 throughout (the original).', default=None),
    Key('speed.channels_last', Boolean(), 'Extension: NHWC memory format for the weights and the input images '
        '(faster convolutions with tensor cores); checkpoints keep the same keys and load either way.',
        default=False),
    Key('speed.cudnn_benchmark', Boolean(), 'Extension: cuDNN autotunes convolution algorithms '
        '(cudnn.benchmark on, cudnn.deterministic off, set after seeding): faster on GPUs, but runs are no '
        'longer bit-reproducible. No effect on CPU.', default=False),
    Key('speed.compile', Boolean(), 'Extension: torch.compile the network for the training forwards (validation '
        'runs eagerly; the first steps of each phase pay the compilation). Checkpoints keep the original key '
        'names.', default=False),
    Key('speed.masked_losses', Boolean(), 'Extension: task losses as masked means over the valid pixels instead '
        'of the original\'s boolean selection of valid rows: no host synchronisation per step on GPUs. The same '
        'values up to float rounding, so not bit-equal to the original; false = the original\'s order of '
        'operations.', default=False),
    # --- test (docs/original.md §1.5)
    Key('test.which_iter', Nullable(Text()), 'Unused by the original and by this code.', default=None,
        unused=True),
    # --- quirks (docs/original.md §0.3, §12): every default is the original behaviour
    Key('quirks.decode_normals', Boolean(), 'NYU normals become float unit vectors (x, y, z), invalid = 0, '
        'mirroring negates x; valid iff norm > 0.5.', default=False,
        modules=('dataloaders', 'envs/losses', 'utils/metrics')),
    Key('quirks.eval_iter', Integer(-1), 'Validation batches during train_policy/re-train are 0..eval_iter '
        '(10 = the original 11 batches); -1 = the whole split.', default=10,
        modules=('train_policy', 're-train')),
    Key('quirks.val_split', Nullable(Choice(SPLITS)), 'Split used for validation and model selection; null = the '
        'original (test for NYU/CityScapes, test_small for Taskonomy), e.g. val for a held-out split.',
        default=None, modules=('train_policy', 're-train')),
    Key('quirks.miou_all_classes', Boolean(), 'mIoU over all classes present in GT or prediction (IoU 0 when no '
        'true positive) instead of only classes with TP > 0.', default=False, modules=('utils/metrics',)),
    Key('quirks.pixel_pooled', Boolean(), 'Pixel Acc, abs/rel/sq_rel errors, seg err, keypoint/edge err pooled '
        'over pixels instead of averaged per batch.', default=False, modules=('utils/metrics',)),
    Key('quirks.bilinear_resize', Boolean(), 'Bilinear instead of nearest upsampling of predictions in '
        'evaluation.', default=False, modules=('utils/metrics',)),
    Key('quirks.sigma_positive_only', Boolean(), 'A depth prediction <= 0 is outside every delta < 1.25^n '
        'threshold (the original counts it as inside all three: max(p/g, g/p) is negative there).', default=False,
        modules=('utils/metrics',)),
    Key('quirks.weight_lr_schedule_after_warmup', Boolean(), 'The decay_lr StepLR also drives the SGD weight '
        'optimiser of the alternation phase.', default=False, modules=('envs',)),
    Key('quirks.true_block_count', Boolean(), 'ResNet34 counts as 16 blocks (not 18) in the "best" threshold.',
        default=False, modules=('train_policy',)),
    Key('quirks.true_skip', Boolean(), 'Skipped blocks are not computed in training (BN statistics see only the '
        'tasks that use a block).', default=False, modules=('models', 'envs')),
    Key('quirks.paper_sparsity', Boolean(), 'Sparsity loss = sum over tasks and gated rows of log(alpha_execute) '
        '(the paper\'s form).', default=False, modules=('envs/losses',)),
    Key('quirks.paper_sharing_weights', Boolean(), 'Sharing weights (L-l)/L (more weight on bottom blocks, the '
        'paper) instead of (i+1)/P.', default=False, modules=('envs/losses',)),
)

KEYS: dict[str, Key] = {key.name: key for key in SCHEMA}
if len(KEYS) != len(SCHEMA):  # pragma: no cover - guards edits of the table above
    raise RuntimeError('utils/config.py: duplicate key in SCHEMA')
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(key.section for key in SCHEMA if key.section))


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


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


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
    if script not in key.required_by:
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
                errors.append(f'{source}: {dotted} = {_show(value)}: expected a section (a mapping) with keys '
                              f'from: {names}')
            continue
        suggestion = _suggest(dotted)
        if suggestion:
            errors.append(f'{source}: {dotted} = {_show(value)}: unknown key, did you mean {suggestion}?')
        else:
            known = sorted({k.name[len(prefix):].split('.')[0] for k in SCHEMA if k.name.startswith(prefix)})
            where = f'in {section}' if section else 'at the top level'
            errors.append(f'{source}: {dotted} = {_show(value)}: unknown key; expected one of the keys '
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
            errors.append(f'{source}: {key.name} = {_show(value)}: {problem}')
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


def _rule_reference(opt: Mapping[str, Any], script: str):
    """Training scripts compute the validation score, which needs the original's reference table."""
    if script not in TRAIN_RETRAIN:
        return
    tasks, dataset = opt['tasks'], opt['dataload']['dataset']
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
    blocks = backbone_blocks(opt['backbone'])
    if opt['skip_layer'] >= blocks:
        yield 'skip_layer', opt['skip_layer'], (f'expected an integer in [0, {blocks - 1}] ({opt["backbone"]} '
                                                f'has {blocks} blocks)')


def _rule_warm_up(opt: Mapping[str, Any], script: str):
    train = opt['train']
    if script == 'train_policy' and train['warm_up_iters'] >= train['total_iters']:
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


def _rule_architecture(opt: Mapping[str, Any], script: str):
    architecture = opt.get('architecture', 'adashare')
    if architecture == 'adashare':
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
         _rule_pairs, _rule_architecture, _rule_weighting, _rule_backbone_weights)


def _rule_errors(opt: Mapping[str, Any], script: str, source: str) -> list[str]:
    errors = []
    for rule in RULES:
        for key, value, problem in rule(opt, script):
            shown = 'is missing' if value is _MISSING else f'= {_show(value)}'
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
        raise ConfigError(f'{source}: the document is {_show(raw)}; expected a mapping of config keys '
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
    valid = f'0..{len(seeds) - 1} (seed = {_show(seeds, 60)} has {len(seeds)} entries)'
    if not exp_ids:
        raise ConfigError(f'{source}: --exp_ids = []: expected at least one index into seed, {valid}')
    for exp_id in exp_ids:
        if not _is_int(exp_id) or not 0 <= exp_id < len(seeds):
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
                 'is_sparse', 'is_sharing', 'is_curriculum', 'curriculum_speed', 'diff_sparsity_weights', 'policy'),
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
        if key in RESUME_EXTENDABLE and _is_int(a) and _is_int(b) and b > a:
            continue
        lines.append(f'{key}: {"(absent)" if a is _MISSING else _show(a)} → {"(absent)" if b is _MISSING else _show(b)}')
    return lines


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
    """The configuration reference (README): every key, then the quirk switches with the modules they affect."""
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


README_START = '<!-- config-reference:start -->'
README_END = '<!-- config-reference:end -->'


def readme_with_reference(text: str) -> str:
    """README text with the block between the config-reference markers replaced by schema_markdown()."""
    if README_START not in text or README_END not in text:
        raise ValueError(f'README.md lacks the markers {README_START} / {README_END}')
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f'{head}{README_START}\n{schema_markdown()}{README_END}{tail}'


if __name__ == '__main__':
    from tools.config import main
    from utils.cli import deprecated_command
    deprecated_command('utils.config', 'config', main)
