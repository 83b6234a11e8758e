/**
 * The named scalars both trainers send in MetricsRow.scalars (issue 15): one list, held equal to
 * test/vectors/scalars.json, which the Python trainer's tests read too (python/srlora_torch/telemetry.py SCALARS).
 * The unit is the name's suffix (the page's unitOf reads it for axes and tooltips): `_MiB` mebibytes, `_pct` percent.
 *
 * `every`: `row` = in every metrics row whose value is finite (grad_norm is absent from a row whose gradients were not
 * finite); `message` = once per metrics message (≤ 10/s), on its last row — system readings cost a syscall, not a step.
 * `trainers`: who sends it — `builtin` (srlora train), `pytorch` (python -m srlora_torch.train; `pytorch-cuda`: on a
 * CUDA device only; `pytorch-nvml`: where NVML answers), `pytorch-cpu` on a CPU run only.
 */
export interface ScalarSpec {
  readonly name: string;
  /** What a chart of it is headed with, for people (the name, as sent, stays visible beside it for grepping logs). */
  readonly title: string;
  readonly unit: '' | 'MiB' | '%';
  readonly every: 'row' | 'message';
  readonly trainers: readonly ('builtin' | 'pytorch' | 'pytorch-cpu' | 'pytorch-cuda' | 'pytorch-nvml')[];
  readonly description: string;
}

export const SCALARS: readonly ScalarSpec[] = [
  { name: 'grad_norm', title: 'Gradient norm', unit: '', every: 'row', trainers: ['builtin', 'pytorch'],
    description: 'L2 norm of the trained (adapter) parameters\' gradients over the global batch, before the update' },
  { name: 'process/rss_MiB', title: 'Process memory (resident)', unit: 'MiB', every: 'message', trainers: ['builtin', 'pytorch-cpu'],
    description: 'resident memory of the trainer process (rank 0)' },
  { name: 'process/cpu_pct', title: 'Process CPU', unit: '%', every: 'message', trainers: ['builtin', 'pytorch-cpu'],
    description: 'CPU time of the trainer process since the previous metrics message, in % of one core (may exceed 100)' },
  { name: 'gpu/allocated_MiB', title: 'GPU memory allocated', unit: 'MiB', every: 'message', trainers: ['pytorch-cuda'],
    description: 'GPU memory held by tensors (torch.cuda.memory_allocated), rank 0\'s device' },
  { name: 'gpu/reserved_MiB', title: 'GPU memory reserved', unit: 'MiB', every: 'message', trainers: ['pytorch-cuda'],
    description: 'GPU memory reserved by the caching allocator (torch.cuda.memory_reserved)' },
  { name: 'gpu/peak_MiB', title: 'GPU memory peak', unit: 'MiB', every: 'message', trainers: ['pytorch-cuda'],
    description: 'peak GPU memory held by tensors since the trainer started (torch.cuda.max_memory_allocated)' },
  { name: 'gpu/util_pct', title: 'GPU utilisation', unit: '%', every: 'message', trainers: ['pytorch-nvml'],
    description: 'GPU utilisation over NVML\'s last sample period (torch.cuda.utilization), where NVML is available' },
];

/** The scalar names, as sent. */
export const SCALAR_NAMES = SCALARS.map((s) => s.name);
