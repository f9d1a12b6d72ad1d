"""How to measure: time one callable with warm-up and many repeats.

CUDA: CUDA events around every call, optional L2 flush (a 256 MB write) between calls.
CPU: "blocked" times blocks of `number` calls with the stdlib's timeit.Timer (what torch.utils.benchmark's
CPU Timer wraps; its own Timer.timeit adds at least 2 untimed calls per block: full attention at 112x112
made 11 calls per process instead of 5), with `number` calibrated from the warm-up so that a block lasts about `block_time`,
until `min_run_time` and `min_samples` are reached; "adaptive" is torch.utils.benchmark's
Timer.adaptive_autorange with torch's thread count.
Both: the garbage collector is off from warm-up to the last timed call (a collection inside a timed call is
noise the case did not cause), and `prime_runtime` runs first, so that the first case timed in a process
does not pay for waking torch's thread pool and the CPU's clocks. The prime is itself timed: its per-call
time (`calib_ms`, a fixed 256x256 matmul, read again after the timed calls: the slower reading is kept) and
a DRAM-bound copy (`calib_bw_ms`, CPU only) tell the machine's compute and memory speed in that process: a sweep re-runs
processes slowed by their neighbours, and `natbench compare` tells machine drift from a regression.
The sentinel (CPU, blocked): after each timed block the same matmul runs for a block of its own, so the
machine's speed is read at the moments the case ran, not only before and after. On the shared 2-core VM the
per-process medians of a matmul-bound case followed their sentinel's (correlation 0.94, 19 processes; the
readings before and after: 0.28), and case / sentinel varied 1.0 % between processes against 5.7 % raw.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
import timeit
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from natbench.measure.memory import HEAP_RESERVE_FACTOR, heap_bytes, reserve_heap

L2_FLUSH_BYTES = 256 * 2**20
METHODS = ("blocked", "adaptive")


@dataclass(frozen=True)
class TimerConfig:
    min_run_time: float = 0.5  # seconds of timed calls (after warm-up)
    warmup: float = 0.1  # seconds of warm-up calls, at least `min_warmup_calls`
    min_warmup_calls: int = 2
    l2_flush: bool = False  # CUDA only: overwrite a 256 MB buffer before every call
    method: str = "blocked"  # CPU: Timer.timeit blocks of block_time, or Timer.adaptive_autorange
    max_run_time: float = 10.0  # seconds: the most timed calls may take (adaptive: its own limit)
    adaptive_threshold: float = 0.1  # adaptive only: stop once IQR / median is below this
    min_samples: int = (
        3  # CPU: extra blocks are timed until there are this many samples (within max_run_time)
    )
    block_time: float = 0.01  # CPU blocked: seconds per timed block (torch's own estimate rounds up to 10x)
    # CPU blocked: after each timed block, a block of the calibration matmul, timed too (Timing.sentinel_ms)
    sentinel: bool = True
    min_reps: int = 10  # CUDA
    max_reps: int = 10_000  # CUDA

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"timer method must be one of {METHODS}, got {self.method!r}")
        if self.min_run_time <= 0 or self.warmup < 0 or self.block_time <= 0:
            raise ValueError("min_run_time and block_time must be > 0 and warmup >= 0 (seconds)")

    @classmethod
    def from_dict(cls, data: dict | None) -> TimerConfig:
        data = dict(data or {})
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"unknown timer setting(s) {unknown}; valid: {', '.join(sorted(valid))}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Timing:
    samples_ms: list[float]  # per-call milliseconds, one per sample
    calls_per_sample: int
    method: str
    sentinel_ms: list[float] | None = None  # ms per sentinel call in the block after each sample
    faults_per_call: float | None = None  # minor page faults per timed call (CPU blocks; None: not counted)
    median_ms: float = field(init=False)
    iqr_ms: float = field(init=False)
    min_ms: float = field(init=False)

    def __post_init__(self):
        if not self.samples_ms:
            raise ValueError("a timing needs at least one sample")
        if self.sentinel_ms is not None and len(self.sentinel_ms) != len(self.samples_ms):
            raise ValueError("a timing's sentinel needs one reading per sample")
        s = np.asarray(self.samples_ms, dtype=np.float64)
        q25, q50, q75 = np.percentile(s, [25, 50, 75])
        self.median_ms, self.iqr_ms, self.min_ms = float(q50), float(q75 - q25), float(s.min())

    @property
    def sentinel_median_ms(self) -> float | None:
        return float(np.median(self.sentinel_ms)) if self.sentinel_ms else None

    @property
    def relative(self) -> float | None:
        """The case's time in sentinel calls: the median over blocks of sample / the sentinel block after it.
        Each block and its sentinel meet the same moment of the machine, so its speed cancels."""
        if not self.sentinel_ms:
            return None
        return float(np.median(np.asarray(self.samples_ms) / np.asarray(self.sentinel_ms)))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# CPU warm-up goes on while a call still faults pages in: the heap of a case process (measure.memory) grows
# over the first calls of an op with large temporaries (window attention 448x448: 163,223 / 25,088 / 0 faults
# in calls 1-3, ~1-2 us each) and only then reuses its pages. After a first call that faulted, warm-up
# pre-faults heap headroom (measure.memory.reserve_heap), so that later growth finds resident pages.
# Bounded by calls and seconds.
STEADY_FAULTS = 256  # page faults per call (1 MiB) that count as steady
# ... as do faults that cost under 1 % of the call (at 2 us each, 4 KiB pages): a model's first call faulted
# ~490 pages (~1 ms of 140-220 ms) and then none, so a second call bought nothing. A first call slowed by one-off
# work faults far more (natten's eager Flex compiling: 35-63k pages, 3-13 % of it), so it still settles.
FAULT_SECONDS = 2e-6
STEADY_SHARE = 0.01
MAX_SETTLE_CALLS = 6
# A fault costs far more on some minutes of a VM than on others (13 us each in a window 448x448 process here,
# 25,097 faults in 427 ms; 1-2 us in the next), and a 3 s bound could end warm-up early on such a minute.
# Settling is bounded by calls; this bound only stops a runaway. Some heaps grow in bursts for ~20 calls
# (quiet calls between): the heap reserved after the first call takes most of that growth; the row's
# timed_faults shows what is left.
MAX_SETTLE_SECONDS = 15.0


def faulting(faults: float, seconds_per_call: float) -> bool:
    """Whether a call that faulted `faults` pages in was still growing its memory: more than STEADY_FAULTS
    and, at FAULT_SECONDS each, over STEADY_SHARE of the call."""
    return faults > STEADY_FAULTS and faults * FAULT_SECONDS > STEADY_SHARE * seconds_per_call


def _minor_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def warm_up(fn: Callable[[], object], device: torch.device, config: TimerConfig) -> float:
    """Call fn until warm (compilation, caches, allocator; on CPU until a call's page faults are few: see
    STEADY_FAULTS); returns seconds per call of the last call."""
    cpu = device.type == "cpu"
    calls, start = 0, time.perf_counter()
    last = start
    per_call = 0.0
    settling = cpu
    while (
        calls < config.min_warmup_calls
        or time.perf_counter() - start < config.warmup
        or (
            settling
            and calls < config.min_warmup_calls + MAX_SETTLE_CALLS
            and time.perf_counter() - start < config.warmup + MAX_SETTLE_SECONDS
        )
    ):
        before = _minor_faults() if cpu else 0
        heap = heap_bytes() if cpu and calls == 0 else None
        fn()
        synchronize(device)
        now = time.perf_counter()
        per_call, last = now - last, now
        if cpu:
            faults = _minor_faults() - before
            settling = faulting(faults, per_call)
            if settling and heap is not None:
                reserve_heap(HEAP_RESERVE_FACTOR * (heap_bytes() - heap))
                last = time.perf_counter()  # the next call's time is its own
        calls += 1
    return per_call


PRIME_SECONDS = (
    0.05  # 0.05 and 0.1 s read the same (0.331-0.333 ms, 20 interleaved processes each, 2-core VM)
)
CALIB_SIZE = 256


def _calibration_call(device: torch.device) -> Callable[[], object]:
    """One call of the calibration workload (a CALIB_SIZE^2 matmul, synchronized by .item())."""
    a = torch.randn(CALIB_SIZE, CALIB_SIZE, device=device)
    return lambda: (a @ a).sum().item()


def prime_runtime(device: torch.device | str, seconds: float | None = None) -> float | None:
    """Run a fixed workload (CALIB_SIZE^2 matmuls) for `seconds` (PRIME_SECONDS) on the process's threads
    before anything is timed; returns its median ms per call over the second half of the calls (the first
    half wakes the thread pool and clocks), or None when too few calls ran."""
    seconds = PRIME_SECONDS if seconds is None else seconds
    call = _calibration_call(torch.device(device))
    times = []
    start = last = time.perf_counter()
    while last - start < seconds:
        call()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    tail = times[len(times) // 2 :]
    return float(np.median(tail)) * 1e3 if len(tail) >= 3 else None


# The memory side of the machine's speed: shifted window attention or an explicit softmax slowed by 15-43 %
# between sweeps while the matmul calibration moved 0.2 %, so a process also times a copy that runs from DRAM.
COPY_BYTES = 24 * 2**20  # source + destination (48 MiB) exceed this VM's 32 MiB L3: ~2.3 ms at ~20 GB/s; on a
# CPU with a larger cache part of it stays there, and the memory factor is then a weaker reading
COPIES = 4
CHECK_SECONDS = 0.01  # the matmul reading again after the timed calls (~30 calls): a process slowed by its
# neighbours while it was timed shows it (natbench.measure.repeat); the copy, whose reading moves +-25 % between
# quiet processes, is read once and serves only compare's machine drift


def copy_calibration(device: torch.device | str, copies: int = COPIES) -> float | None:
    """Median ms of `copies` copies of COPY_BYTES on a CPU, after one untimed copy (first touch); None on
    CUDA (a 24 MiB copy fits an H100's L2 and takes microseconds: launch time, not memory speed)."""
    device = torch.device(device)
    if device.type != "cpu":
        return None
    src = torch.ones(COPY_BYTES // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(copies):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3 if times else None


def slower(*readings: float | None) -> float | None:
    """The slowest of a process's readings of one calibration workload (None when there is none)."""
    known = [r for r in readings if r is not None]
    return max(known) if known else None


@contextlib.contextmanager
def gc_disabled():
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def time_callable(
    fn: Callable[[], object], device: torch.device | str, config: TimerConfig | None = None
) -> Timing:
    """Warm fn up, then time it, gc off. fn must run one complete call (forward, or forward + backward)."""
    config = config or TimerConfig()
    device = torch.device(device)
    with gc_disabled():
        per_call = warm_up(fn, device, config)
        if device.type == "cuda":
            return _time_cuda(fn, device, config, per_call)
        return _time_cpu(fn, config, per_call)


def _time_cpu(fn: Callable[[], object], config: TimerConfig, per_call: float) -> Timing:
    if config.method == "adaptive":
        # torch.utils.benchmark imports cpp_extension, which warns on every CUDA build of torch without a GPU.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        from torch.utils.benchmark import Timer

        # Timer defaults to one thread; measure with the threads the process would really use.
        timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        m = timer.adaptive_autorange(
            threshold=config.adaptive_threshold,
            min_run_time=config.min_run_time,
            max_run_time=config.max_run_time,
        )
        times, number = list(m.times), m.number_per_run
        start = time.perf_counter()
        while len(times) < config.min_samples and time.perf_counter() - start < config.max_run_time:
            times += timer.timeit(number).times  # one more block of the same size
        return Timing([t * 1e3 for t in times], number, "torch.utils.benchmark:adaptive_autorange")
    number = calls_per_block(per_call, config.block_time)
    block = timeit.Timer(fn)  # the warm-up above is the only untimed work
    sentinel = _sentinel(number * per_call) if config.sentinel else None
    times, readings, total, faults = [], [], 0.0, 0
    while total < config.min_run_time or len(times) < config.min_samples:
        before = _minor_faults()
        seconds = block.timeit(number)
        faults += _minor_faults() - before
        times.append(seconds / number)
        total += seconds
        if sentinel is not None:
            readings.append(sentinel[0].timeit(sentinel[1]) / sentinel[1] * 1e3)
        if total >= config.max_run_time:
            break
    method = "timeit:blocks" + ("+sentinel" if sentinel else "")
    return Timing([t * 1e3 for t in times], number, method, readings or None, faults / (number * len(times)))


# The sentinel block after each timed block: a share of the block's time, within bounds, so that a slow case
# (one 100 ms call a block) has its sentinel read for long enough while a fast one pays at most 50 %.
SENTINEL_SHARE = 0.5
SENTINEL_MIN_S, SENTINEL_MAX_S = 0.004, 0.025


def sentinel_name() -> str:
    """What the sentinel ran: readings compare only between rows with the same name (torch's matmul can change)."""
    return f"matmul {CALIB_SIZE}x{CALIB_SIZE} float32, torch {torch.__version__}"


def _sentinel(block_seconds: float) -> tuple[timeit.Timer, int]:
    """(timer, calls per block) of the calibration matmul, sized for a timed block of `block_seconds`."""
    return calibration_timer(min(max(SENTINEL_SHARE * block_seconds, SENTINEL_MIN_S), SENTINEL_MAX_S))


def calibration_timer(seconds: float) -> tuple[timeit.Timer, int]:
    """(timer, calls) of the CPU calibration matmul for a block of about `seconds`."""
    timer = timeit.Timer(_calibration_call(torch.device("cpu")))
    per_call = min(timer.repeat(repeat=3, number=1))
    return timer, calls_per_block(per_call, seconds)


def calls_per_block(per_call: float, block_time: float) -> int:
    """Calls per timed block so that one block lasts about block_time (at least one call)."""
    return max(1, round(block_time / max(per_call, 1e-9)))


def _cuda_event():
    return torch.cuda.Event(enable_timing=True)


def _time_cuda(
    fn: Callable[[], object],
    device: torch.device,
    config: TimerConfig,
    per_call: float,
    event: Callable[[], object] | None = None,
    sync: Callable[[torch.device], None] | None = None,
) -> Timing:
    """event / sync: the event source (record(), elapsed_time(other) in ms) and device sync; CUDA's by
    default, replaceable so that this logic runs on CPU with stand-ins."""
    event, sync = event or _cuda_event, sync or torch.cuda.synchronize
    reps = int(min(max(config.min_run_time / max(per_call, 1e-7), config.min_reps), config.max_reps))
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device) if config.l2_flush else None
    starts = [event() for _ in range(reps)]
    ends = [event() for _ in range(reps)]
    for start, end in zip(starts, ends):
        if flush is not None:
            flush.zero_()
        start.record()
        fn()
        end.record()
    sync(device)
    samples = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    return Timing(samples, 1, "cuda-events" + ("+l2-flush" if flush is not None else ""))
