"""TrainParams: how a model is trained (the `TrainParams` config section). Add your own switches here."""
from __future__ import annotations

from dataclasses import dataclass

from core.params_base import INT_MAX, param


@dataclass
class TrainParams:
    epochs: int = param(1, "passes over the training set (an upper bound when max_steps is set)", min=1, max=10**6)
    max_steps: int = param(-1, "stop after this many optimizer steps; -1 = run all epochs", min=1, max=INT_MAX, also=(-1,))
    batch_size: int = param(32, "samples per batch", min=1, max=2**20)
    lr: float = param(1e-3, "peak learning rate (AdamW)", gt=0, max=10**6)
    lr_schedule: str = param("cosine", "after warm-up: 'cosine' or 'linear' decay to min_lr_frac*lr, 'constant', 'wsd' (warmup-stable-decay: flat, then linear decay over the last decay_frac of training), 'plateau' (ReduceLROnPlateau on the val loss, no warm-up)", choices=("cosine", "linear", "constant", "wsd", "plateau"))
    min_lr_frac: float = param(0.1, "cosine/linear/wsd decay ends at min_lr_frac * lr; plateau never goes below it", min=0, max=1)
    warmup_steps: int = param(100, "linear learning-rate warm-up steps (not with lr_schedule='plateau')")
    decay_frac: float = param(0.2, "lr_schedule='wsd': share of the optimizer steps spent decaying at the end", min=0, max=1)
    plateau_factor: float = param(0.5, "lr_schedule='plateau': multiply lr by this when the val loss stops improving", gt=0, lt=1)
    plateau_patience: int = param(2, "lr_schedule='plateau': validations without improvement before lr drops", min=0, max=10**6)
    early_stop_stat: str | None = param(None, "stop early when this validation stat stops improving, e.g. 'stat/val_loss:main'; None = never")
    early_stop_patience: int = param(3, "validations without improvement before early stopping", min=0, max=10**6)
    early_stop_mode: str = param("min", "early_stop_stat improves when it goes 'min' (down) or 'max' (up)", choices=("min", "max"))
    early_stop_min_delta: float = param(0.0, "smallest change of early_stop_stat that counts as an improvement", min=0, max=10**9)
    weight_decay: float = param(0.1, "AdamW weight decay on matrices (not on biases, norms, embeddings' positions)", min=0, max=100)
    beta1: float = param(0.9, "AdamW beta1", min=0, lt=1)
    beta2: float = param(0.99, "AdamW beta2", min=0, lt=1)
    grad_clip: float | None = param(1.0, "clip gradient norm to this value; None = no clipping", gt=0, max=10**9)
    accumulate_grad_batches: int = param(1, "batches whose gradients add up before each optimizer step", min=1, max=2**16)
    val_check_interval: float | int = param(1.0, "validate every this many train batches (int) or fraction of an epoch (float)")
    hyperparams_log_freq: int = param(50, "log lr, elapsed time and tokens/s every this many optimizer steps (counted over the whole run)", min=1, max=INT_MAX)
    log_health: bool = param(True, "log health/grad_norm (before clipping) and health/weight_norm on logged steps and health/update_ratio:{layer} at validation (train/health.py)")
    n_print_samples: int = param(3, "samples printed at the end of every epoch", min=0, max=1000)
    print_sample_len: int = param(60, "longest printed sample, in tokens", min=0, max=10**5)
    checkpoint_every_n_steps: int = param(200, "write the resumable checkpoint (checkpoints/last.ckpt) every this many optimizer steps, and after every validation; 0 = only after validations", min=0, max=INT_MAX)
    snapshot_every_n_steps: int = param(0, "checkpoints over training (weights only, kept with the run in checkpoints-over-training/, docs/dynamics.md): every this many optimizer steps; 0 = off", min=0, max=INT_MAX)
    snapshot_every_n_samples: int = param(0, "checkpoints over training every this many training samples (rounded up to whole global batches); 0 = off", min=0, max=INT_MAX)
    snapshot_log_spaced: bool = param(False, "checkpoints over training also at the initial weights and steps 1, 2, 4, 8, ... (where heads form)")
    snapshot_max_count: int = param(0, "keep at most this many checkpoints over training, thinned evenly in log(step) (first and last kept); 0 = no limit", min=0, max=INT_MAX)
    snapshot_max_mb: float = param(0.0, "keep checkpoints over training within this many MiB, thinned the same way; 0 = no limit", min=0, max=1e9)
    threads: int = param(0, "CPU threads for torch (torch.set_num_threads); 0 = torch's default ($OMP_NUM_THREADS or the cores) capped at the cores this process may use (os.sched_getaffinity)", min=0, max=4096)
    num_workers: int = param(0, "dataloader worker processes (0 = load in the main process)", min=0, max=256)
    precision: str = param("32-true", "Lightning precision: '32-true', 'bf16-mixed' (GPU Ampere+ or a CPU with bf16), '16-mixed' (GPU only), '64-true'", choices=("32-true", "bf16-mixed", "16-mixed", "64-true"))
    accelerator: str = param("auto", "Lightning accelerator: 'auto' (GPU if any), 'cpu', 'gpu'", choices=("auto", "cpu", "gpu", "cuda"))
    devices: int | str = param("auto", "devices (processes) per node: a count, -1 = all GPUs, 'auto' = all GPUs or 1 CPU; --gpu-id=0,1 overrides (docs/scaling.md)", min=1, max=1024, also=(-1,))
    num_nodes: int = param(1, "machines; launch the same command on each (torchrun / SLURM srun), see docs/scaling.md", min=1, max=4096)
    strategy: str = param("auto", "Lightning strategy: 'auto' (DDP when several devices), 'ddp', 'ddp_find_unused_parameters_true', 'fsdp' (GPUs only)", choices=("auto", "ddp", "ddp_find_unused_parameters_true", "fsdp"))
    compile: bool = param(False, "torch.compile the training loss computation (docs/scaling.md says when it pays)")
    init_from: str | None = param(None, "start from these weights: a saved run (folder or timestamp, RUN@final or RUN@N samples), 'gpt2' or a Hugging Face model folder/name (NAME@REVISION); the source's tokenizer and architecture are used (docs/finetune.md)")
    freeze: list[str] = param([], "parameter name patterns not to train, e.g. ['blocks.0.*', 'embed'] (fnmatch; blocks.{i}. = decoder.layers.{i}.)")
    lora_rank: int = param(0, "train LoRA adapters of this rank on lora_targets instead of the weights (needs init_from); 0 = off", min=0, max=2**16)
    lora_alpha: float = param(16.0, "LoRA scale: the update is (lora_alpha / lora_rank) * B @ A", gt=0, max=10**9)
    lora_targets: list[str] = param(["blocks.*"], "name patterns of the block weight matrices LoRA adapts (default: every attention and MLP matrix)")
