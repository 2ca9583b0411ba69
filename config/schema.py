"""The schema: every YAML key with its check, default, the scripts that need it and its meaning.

`SCHEMA` is the single source of truth (docs/config.md is generated from it): every key of
docs/original.md §1, our extension keys and the `quirks:` switches. Adding a key is one `Key(...)` line;
validation, defaults, path resolution, `format_options` and the reference all follow from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from utils.checks import Boolean, Check, Choice, Integer, ListOf, Mapping_, Nullable, Number, Text  # noqa: F401
from utils.paths import REPO_ROOT  # noqa: F401 (part of the config API)
from utils.tasks import FIXED_TASK_CHANNELS, TASKS  # noqa: F401 - re-exported: the task registry is utils/tasks.py


SCRIPTS = ('train_policy', 're-train', 'test')
TRAIN = ('train_policy',)
RETRAIN = ('re-train',)
TRAIN_RETRAIN = ('train_policy', 're-train')
ALL = SCRIPTS

PAPER_TASKS = ('seg', 'sn', 'depth', 'keypoint', 'edge')
# KnownAnswer: the synthetic sharing benchmark with a known answer (docs/known_answer.md).
DATASETS = ('NYU_v2', 'CityScapes', 'Taskonomy', 'KnownAnswer')
DATASET_TASKS = {'NYU_v2': ('seg', 'sn', 'depth'), 'CityScapes': ('seg', 'depth'), 'Taskonomy': PAPER_TASKS,
                 'KnownAnswer': ('seg', 'sn', 'depth', 'seg_perm', 'texture', 'blur', 'noise')}
KNOWN_ANSWER_SEG_CLASSES = 40  # the generator writes NYU40 labels; seg_perm permutes them
# Residual blocks L of the Deeplab-ResNets (the policy has L - skip_layer rows per task); any registry
# backbone: backbone_blocks().
BACKBONE_BLOCKS = {'ResNet10': 4, 'ResNet18': 8, 'ResNet34': 16, 'ResNet101': 33}
# FIXED_TASK_CHANNELS (utils/tasks.py): output channels the losses and metrics of these tasks assume.
SPLITS = ('train', 'train1', 'train2', 'val', 'test', 'test_small')
MAX_SEED = 2 ** 32 - 1  # numpy's seeding limit
# `architecture:` values: AdaShare's gated network, AutoMTL's supermodel (docs/automtl.md), then the paper's baselines (models/baselines registry;
# tests/test_config.py checks the two lists agree).
ARCHITECTURES = ('adashare', 'automtl', 'single_task', 'multi_task', 'cross_stitch', 'sluice', 'nddr', 'mtan')
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


class CpuThreads(Check):
    """`speed.cpu_threads`: 'auto', 'torch' or a thread count (engine/threads.py)."""

    def describe(self) -> str:
        return "'auto', 'torch' or an integer >= 1"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, str):
            return value in ('auto', 'torch')
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    def problem(self, value: Any) -> str | None:
        if self.accepts(value):
            return None
        if isinstance(value, str) and value.strip().isdigit():
            return f'expected {self.describe()}, not a string (remove the quotes)'
        return f'expected {self.describe()}'


def backbone_blocks(name: str) -> int:
    """L, the gateable blocks of a registry backbone (ValueError for an unknown name)."""
    if name in BACKBONE_BLOCKS:
        return BACKBONE_BLOCKS[name]
    from models.backbones import num_gated_blocks  # torch only where a non-default backbone is named
    return num_gated_blocks(name)




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
    not_for: tuple[str, ...] = ()  # architectures that neither need nor read the key (AdaShare's policy keys)

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
# Architectures that neither need nor read AdaShare's policy-learning keys (AutoMTL's are the `automtl:` section).
NOT_FOR_AUTOMTL = ('automtl',)
AUTOMTL = ('architecture', 'automtl')

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
        'keypoint/edge 1; KnownAnswer: seg and seg_perm 40, texture 4, blur/noise 1).', required_by=needs(ALL)),
    Key('lambdas', ListOf(Number(ge=0)), 'Task-loss weights, one per task, in weight and policy steps and in '
        'retraining.', required_by=needs(TRAIN_RETRAIN)),
    Key('policy_model', Choice(('task-specific',), refused={'instance-specific': 'not supported yet '
        '(instance-specific policies are not implemented)'}), 'task-specific: one policy per task (every '
        'shipped config).', required_by=needs(ALL)),
    Key('policy', Boolean(), 'After warm-up, True runs the backbone per task with Gumbel-Softmax gates and '
        'validates sampled policies; False keeps the shared full network.', required_by=needs(TRAIN), not_for=NOT_FOR_AUTOMTL),
    Key('init_neg_logits', Nullable(Number()), 'Skip-column logit of init_method all_chosen (e.g. -10).',
        default=None, required_by=needs(TRAIN_RETRAIN, when=ALL_CHOSEN)),
    Key('is_sparse', Boolean(), 'Adds train.reg_w * sparsity loss to the policy loss.', required_by=needs(TRAIN), not_for=NOT_FOR_AUTOMTL),
    Key('is_sharing', Boolean(), 'Adds train.reg_w_hamming * sharing (Hamming) loss to the policy loss; also '
        'forces the unweighted sparsity form.', required_by=needs(TRAIN), not_for=NOT_FOR_AUTOMTL),
    Key('skip_layer', Integer(0), 'The first skip_layer blocks are never gated; the policy has L - skip_layer '
        'rows per task (must be < the backbone\'s block count L).', required_by=needs(ALL), not_for=NOT_FOR_AUTOMTL),
    Key('is_curriculum', Boolean(), 'Gate only the last p_epoch // curriculum_speed + 1 blocks; False gates all.',
        required_by=needs(TRAIN), not_for=NOT_FOR_AUTOMTL),
    Key('curriculum_speed', Integer(1), 'Alternation epochs per extra unlocked block; also in the "best" '
        'threshold (read even when is_curriculum is False).', required_by=needs(TRAIN), not_for=NOT_FOR_AUTOMTL),
    Key('fix_BN', Boolean(), 'Freeze the affine parameters of backbone BNs whose name contains "bn" (not the '
        'downsample BNs); running statistics still update.', required_by=needs(TRAIN_RETRAIN), not_for=NOT_FOR_AUTOMTL),
    Key('diff_sparsity_weights', Boolean(), 'Hamming weights (i+1)/P instead of 1 (and the depth-weighted '
        'sparsity when is_sharing is False).', required_by=needs(TRAIN), not_for=NOT_FOR_AUTOMTL),
    Key('retrain_from_pl', Boolean(), 'True: retraining starts from the policy_iter policy-learning weights; '
        'False: from the fresh seeded initialisation.', required_by=needs(RETRAIN)),
    Key('head_channels', Integer(1), 'Extension: width of the hidden convs of every ASPP head branch '
        '(1024 in the original).', default=1024),
    Key('architecture', Choice(ARCHITECTURES), 'Extension: the network. adashare = the gated backbone '
        'with learned policies; automtl = the AutoMTL supermodel of the backbone (operator-level sharing search, '
        'the automtl.* keys, docs/automtl.md); the paper baselines (same backbone, heads, losses, lambdas, optimiser and '
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
    # --- automtl (architecture automtl; docs/automtl.md "Config keys"): paper defaults, the authors' code as switches
    Key('automtl.pretrain_iters', Integer(0), 'AutoMTL: pre-train iterations (options averaged, Adam on all weights, '
        'train split) before policy-train; train.total_iters = pretrain_iters + policy-train iterations.',
        default=10000),
    Key('automtl.policy_iters', Integer(1), 'AutoMTL: p of the alternation: policy-train iteration i is a policy '
        'step (train2) iff i mod (p + w) < p (the authors\' default 100).', default=100),
    Key('automtl.weight_iters', Integer(1), 'AutoMTL: w of the alternation, weight steps (train1) per cycle (the '
        'authors\' default 400; their NYUv2 run 50/50).', default=400),
    Key('automtl.policy_lr', Number(gt=0), 'AutoMTL: Adam LR of the policy logits (weight decay 5e-4).',
        default=0.01),
    Key('automtl.weight_lr', Nullable(Number(gt=0)), 'AutoMTL: SGD LR of the weights in policy-train (momentum 0.9, '
        'weight decay 1e-4); null = train.lr (the paper\'s one weight LR; the authors\' CityScapes run: 0.0001).',
        default=None),
    Key('automtl.reg_lambda', Number(ge=0), 'AutoMTL: lambda_reg, weight of the policy regulariser in the policy '
        'steps (paper Tab. 7: 0.0005 CityScapes and Taskonomy, 0.001 NYUv2).', default=0.0005),
    Key('automtl.reg_scale', Number(gt=0), 'AutoMTL: s in softplus(s * (P(k) - P(shared))) of the regulariser: 1 = '
        'the paper\'s Eq. 2, 6 = the authors\' code.', default=1.0),
    Key('automtl.reg_noise', Boolean(), 'AutoMTL: the regulariser reads a fresh Gumbel-Softmax sample (paper and '
        'code); False = the noise-free softmax(logits / tau).', default=True),
    Key('automtl.init_temp', Number(gt=0), 'AutoMTL: initial Gumbel-Softmax temperature tau0 (the authors\' 5).',
        default=5.0),
    Key('automtl.temp_decay', Number(gt=0, le=1), 'AutoMTL: tau <- tau * temp_decay once per temp_update_iters + 1 '
        'policy steps (the authors\' 0.965).', default=0.965),
    Key('automtl.temp_update_iters', Integer(1), 'AutoMTL: the authors\' counter: tau decays each time the policy '
        'steps since the last decay exceed it (100: once per 101 policy steps).', default=100),
    Key('automtl.share_num', Integer(0), 'AutoMTL: forced bottom sharing (the authors\' --shared k / share_num): the '
        'first share_num convs of every task are "shared" in policy-train (constant, no gradient) and in the '
        'sampled policy; 0 = none (the paper).', default=0),
    Key('automtl.step_per_task', Boolean(), 'AutoMTL: False = the paper\'s one step on sum_t lambda_t L_t (+ '
        'lambda_reg sum_t L_reg(t)); True = the authors\' code: one forward and optimiser step per task and '
        'iteration, each with lambda_t L_t + lambda_reg L_reg(t).', default=False),
    Key('automtl.policy_lr_reset_freq', Nullable(Integer(1)), 'AutoMTL: null = the paper (constant policy LR); '
        '10000 = the authors\' code, which sets the policy LR to 0.001 at every 10000th iteration.', default=None),
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
        'the reference metrics. KnownAnswer (extension): the synthetic sharing benchmark of docs/known_answer.md '
        '(the NYU v2 layout plus seg_perm, texture, blur and noise targets; NYU v2 rules for seg, sn, depth).',
        required_by=needs(ALL)),
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
        'total_iters.', required_by=needs(TRAIN), not_for=NOT_FOR_AUTOMTL),
    Key('train.retrain_total_iters', Integer(1), 'Length of the re-train loop.',
        default=Derived('train.total_iters')),
    Key('train.lr', Number(gt=0), 'LR of the task heads (Adam in warm-up/retrain, SGD in the alternation phase).',
        required_by=needs(TRAIN_RETRAIN)),
    Key('train.backbone_lr', Number(gt=0), 'LR of the backbone (same optimisers).',
        required_by=needs(TRAIN_RETRAIN), not_for=NOT_FOR_AUTOMTL),
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
        required_by=needs(TRAIN_RETRAIN), not_for=NOT_FOR_AUTOMTL),
    Key('train.decay_temp', Number(gt=0, le=1), 'tau <- tau * decay_temp after every policy phase.',
        required_by=needs(TRAIN_RETRAIN), not_for=NOT_FOR_AUTOMTL),
    Key('train.resume', Boolean(), 'Resume policy learning from the which_iter checkpoint (the logits are '
        're-initialised, as in the original).', required_by=needs(TRAIN), not_for=NOT_FOR_AUTOMTL),
    Key('train.which_iter', Nullable(Text(example='warmup')), 'Checkpoint label to resume from.', default=None,
        required_by={'train_policy': ('train.resume', True), 're-train': ('train.retrain_resume', True)}),
    Key('train.retrain_resume', Boolean(), 'Resume retraining from the which_iter checkpoint and its policy '
        'pickle.', required_by=needs(RETRAIN)),
    Key('train.policy_iter', Text(example='best or latest'), 'Label of the policy-learning checkpoint the policy '
        'is sampled from; part of the pickle and retrain checkpoint names.', required_by=needs(('re-train', 'test'))),
    Key('train.init_method', Choice(('equal', 'random', 'all_chosen')), 'Logit init: equal (0.5, 0.5), random '
        '(1e-3 * N(0,1)), all_chosen (0, init_neg_logits).', required_by=needs(ALL), not_for=NOT_FOR_AUTOMTL),
    Key('train.hard_sampling', Boolean(), 'hard= of the training Gumbel-Softmax; True also samples discrete '
        'policies by argmax.', required_by=needs(TRAIN_RETRAIN), not_for=NOT_FOR_AUTOMTL),
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
    Key('speed.cpu_threads', CpuThreads(), 'Extension: intra-op CPU threads (torch.set_num_threads). auto = 1 '
        'thread on a CPU for small configs (head_channels <= 128 and at most 131072 pixels per step: the synthetic '
        'ones: with 2 threads their steps ran 2-19x slower than with 1 while other work shared a 2-core machine, '
        '1.3-1.8x faster when it had the machine to itself), '
        'torch\'s default otherwise, on a GPU, or when OMP_NUM_THREADS / MKL_NUM_THREADS is set; an integer = '
        'that many threads on any device; torch = never touch torch\'s default. The thread count can change float '
        'rounding, not the precision (docs/threads.md).', default='auto'),
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
    raise RuntimeError('config/: duplicate key in SCHEMA')
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(key.section for key in SCHEMA if key.section))
