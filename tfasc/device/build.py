"""Build firmware for a Cortex-M target from a deployment bundle: TFLite Micro + CMSIS-NN (+ CMSIS-DSP).

Compiles the sources directly (not TFLite Micro's Makefile, which downloads and generates files at
parse time; ``../shared/third_party/README.md``) with TFLite Micro's own Cortex-M flags and
optimization levels (framework ``-Os``, kernels and CMSIS ``-O2``) plus the target's core flags
(:mod:`tfasc.device.targets`):

- the TFLite Micro framework (``FRAMEWORK_SOURCES``);
- only the kernels the model uses: each op's registration function is read from TFLite Micro's
  ``micro_mutable_op_resolver.h`` and compiled from the file defining it (the CMSIS-NN one where there
  is one), with its ``*_common.cc``;
- only the CMSIS-NN and CMSIS-DSP functions those objects call: the closure of their undefined
  ``arm_*`` symbols, each from the library's file of that name;
- the bundle's C/C++ files, the runner and the board's startup code.

Objects are cached under ``cache_dir`` by target flags, source path and source content, so a second
model on the same target compiles only its bundle (and any new kernel). Every object and the firmware
are written to a temporary name and renamed, so concurrent builds and interrupted ones leave no
half-written file behind.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from tfasc.device.targets import C_SOURCES, Target
from tfasc.device.toolchain import Toolchain

#: TFLite Micro's framework: interpreter, allocator, planner, flatbuffer parsing, kernel helpers.
FRAMEWORK_SOURCES = (
    "tensorflow/compiler/mlir/lite/core/api/error_reporter.cc",
    "tensorflow/compiler/mlir/lite/schema/schema_utils.cc",
    "tensorflow/lite/core/api/flatbuffer_conversions.cc",
    "tensorflow/lite/core/api/tensor_utils.cc",
    "tensorflow/lite/core/c/common.cc",
    "tensorflow/lite/kernels/internal/common.cc",
    "tensorflow/lite/kernels/internal/portable_tensor_utils.cc",
    "tensorflow/lite/kernels/internal/quantization_util.cc",
    "tensorflow/lite/kernels/internal/reference/portable_tensor_utils.cc",
    "tensorflow/lite/kernels/internal/runtime_shape.cc",
    "tensorflow/lite/kernels/internal/tensor_ctypes.cc",
    "tensorflow/lite/kernels/internal/tensor_utils.cc",
    "tensorflow/lite/kernels/kernel_util.cc",
    "tensorflow/lite/micro/arena_allocator/non_persistent_arena_buffer_allocator.cc",
    "tensorflow/lite/micro/arena_allocator/persistent_arena_buffer_allocator.cc",
    "tensorflow/lite/micro/arena_allocator/recording_single_arena_buffer_allocator.cc",
    "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.cc",
    "tensorflow/lite/micro/debug_log.cc",
    "tensorflow/lite/micro/flatbuffer_utils.cc",
    "tensorflow/lite/micro/kernels/kernel_util.cc",
    "tensorflow/lite/micro/kernels/micro_tensor_utils.cc",
    "tensorflow/lite/micro/memory_helpers.cc",
    "tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc",
    "tensorflow/lite/micro/memory_planner/linear_memory_planner.cc",
    "tensorflow/lite/micro/memory_planner/non_persistent_buffer_planner_shim.cc",
    "tensorflow/lite/micro/micro_allocation_info.cc",
    "tensorflow/lite/micro/micro_allocator.cc",
    "tensorflow/lite/micro/micro_context.cc",
    "tensorflow/lite/micro/micro_interpreter.cc",
    "tensorflow/lite/micro/micro_interpreter_context.cc",
    "tensorflow/lite/micro/micro_interpreter_graph.cc",
    "tensorflow/lite/micro/micro_log.cc",
    "tensorflow/lite/micro/micro_op_resolver.cc",
    "tensorflow/lite/micro/micro_profiler.cc",
    "tensorflow/lite/micro/micro_resource_variable.cc",
    "tensorflow/lite/micro/micro_time.cc",
    "tensorflow/lite/micro/micro_utils.cc",
    "tensorflow/lite/micro/system_setup.cc",
    "tensorflow/lite/micro/tflite_bridge/flatbuffer_conversions_bridge.cc",
    "tensorflow/lite/micro/tflite_bridge/micro_error_reporter.cc",
)

#: TFLite Micro's Cortex-M defines and code-generation flags (its cortex_m_qemu makefile, warnings
#: aside), shared by C and C++; the target adds the core flags. Without its ``TF_LITE_MCU_DEBUG_LOG``:
#: with it a failed kernel check (``TFLITE_ABORT``) prints "HALTED" and spins forever, without it it
#: calls ``abort()`` (``c/startup.c`` says so and exits), which ends the emulation with an error status
#: (a CMSIS-NN kernel refusing its arguments on Helium was found this way).
COMMON_FLAGS = (
    "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-DCMSIS_NN", "-DKERNELS_OPTIMIZED_FOR_SPEED",
    "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0", "-DARM_MATH_LOOPUNROLL",
    "-ffunction-sections", "-fdata-sections", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables",
    "-funsigned-char", "-mlittle-endian", "-fomit-frame-pointer", "-fmessage-length=0",
)
CXX_FLAGS = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics")
C_FLAGS = ("-std=c17",)
FRAMEWORK_OPTIMIZATION = "-Os"
KERNEL_OPTIMIZATION = "-O2"

_RESOLVER_HEADER = "tensorflow/lite/micro/micro_mutable_op_resolver.h"
_RESOLVER_ENTRY = re.compile(r"TfLiteStatus\s+(Add\w+)\(\s*const TFLMRegistration&\s+registration\s*=\s*"
                             r"(?:tflite::)?(Register_\w+)\(\)", re.S)


def include_dirs(sources: Path) -> list[Path]:
    """The include paths of ``../shared/third_party/README.md`` for a tree laid out like it."""
    return [sources / part for part in (
        "tflite-micro", "gemmlowp", "flatbuffers/include", "ruy", "kissfft", "cmsis_nn", "cmsis_nn/Include",
        "cmsis/CMSIS/Core/Include", "cmsis_dsp/Include", "cmsis_dsp/PrivateInclude")]


def registrations(sources: Path) -> dict[str, str]:
    """Resolver method (``AddConv2D``) -> registration function (``Register_CONV_2D``), from TFLite Micro."""
    text = (sources / "tflite-micro" / _RESOLVER_HEADER).read_text()
    return {method: function for method, function in _RESOLVER_ENTRY.findall(text)}


def kernel_sources(sources: Path, resolver_methods: Iterable[str]) -> list[str]:
    """The TFLite Micro kernel files (relative to ``tflite-micro``) the resolver methods need.

    Raises:
        ValueError: a method is unknown to this TFLite Micro or no file defines its registration.
    """
    tflm = sources / "tflite-micro"
    kernels = tflm / "tensorflow/lite/micro/kernels"
    functions = registrations(sources)
    candidates = sorted(kernels.glob("cmsis_nn/*.cc")) + sorted(kernels.glob("*.cc"))
    texts = {path: path.read_text(errors="replace") for path in candidates}
    chosen: list[str] = []
    for method in sorted(set(resolver_methods)):
        if method not in functions:
            raise ValueError(f"resolver method {method}: not in {_RESOLVER_HEADER} of {tflm}")
        definition = re.compile(rf"^TFLMRegistration\s+{functions[method]}\s*\(\s*\)\s*{{", re.M)
        defining = next((path for path, text in texts.items() if definition.search(text)), None)
        if defining is None:
            raise ValueError(f"no kernel source in {kernels} defines {functions[method]}() for {method}")
        stem = defining.stem
        for path in (defining, kernels / f"{stem}_common.cc"):
            relative = str(path.relative_to(tflm))
            if path.is_file() and relative not in chosen:
                chosen.append(relative)
    return chosen


@dataclasses.dataclass(frozen=True)
class Firmware:
    """A linked firmware: its ELF, its sizes (bytes, from ``arm-none-eabi-size``), and ``commands``: every
    compiler command (each object named after its source) and the link command, what a board's own
    build repeats."""

    elf: Path
    text: int
    data: int
    bss: int
    objects: int
    compiled: int
    commands: tuple[str, ...] = ()


class Builder:
    """Compiles and caches objects for one target; links firmware.

    Args:
        tools: the toolchain and source tree.
        target: the core and board.
        cache_dir: where objects are kept between builds (per target and flags).
        jobs: parallel compiler processes (default: the CPU count).
        extra_flags: added to the bundle's and the runner's sources only (e.g. the arena size).
    """

    def __init__(self, tools: Toolchain, target: Target, cache_dir: Path, *, jobs: int | None = None,
                 extra_flags: Sequence[str] = ()):
        self.tools = tools
        self.target = target
        self.jobs = jobs or os.cpu_count() or 1
        flags_key = hashlib.sha256(" ".join((*target.cpu_flags, *COMMON_FLAGS, *CXX_FLAGS, *C_FLAGS)).encode())
        self.object_dir = Path(cache_dir) / f"{target.name}-{flags_key.hexdigest()[:12]}"
        self.object_dir.mkdir(parents=True, exist_ok=True)
        self.includes = [f"-I{path}" for path in include_dirs(tools.sources)]
        self.compiled = 0
        self.commands: dict[Path, list[str]] = {}  # source -> the compiler command of its object
        # The bundle's own code keeps float arithmetic unfused (no -ffp-contract fusing a*b+c into one
        # rounding), as the host that computed the training features and the reference quantization.
        self.own_flags = (KERNEL_OPTIMIZATION, "-ffp-contract=off", *extra_flags)

    # -- compiling ---------------------------------------------------------------------------

    def _command(self, source: Path, output: Path, optimization: str | Sequence[str],
                 extra_includes: Sequence[Path]) -> list[str]:
        cxx = source.suffix in (".cc", ".cpp")
        options = [optimization] if isinstance(optimization, str) else list(optimization)
        return [self.tools.gxx if cxx else self.tools.gcc, *self.target.cpu_flags, *COMMON_FLAGS,
                *(CXX_FLAGS if cxx else C_FLAGS), *options, *[f"-I{p}" for p in extra_includes],
                *self.includes, "-c", str(source), "-o", str(output)]

    def object_for(self, source: Path, optimization: str | Sequence[str], extra_includes: Sequence[Path] = ()) -> Path:
        """The cached object of ``source`` (compiled now if absent); ``RuntimeError`` with the compiler's errors."""
        source = Path(source)
        key = hashlib.sha256(source.read_bytes())
        # A library source by its path (its relative includes resolve from there); a bundle's own source
        # by its name and the contents of the headers beside it, so a bundle rewritten in another run
        # folder reuses its objects.
        where = source.name if extra_includes else str(source.resolve())
        key.update(f"{where}|{optimization}".encode())
        for header in sorted(p for d in extra_includes for p in Path(d).glob("*.h")):
            key.update(header.name.encode() + header.read_bytes())
        output = self.object_dir / f"{source.stem}-{key.hexdigest()[:16]}.o"
        self.commands[source] = self._command(source, Path(source.stem + ".o"), optimization, extra_includes)
        if output.exists():
            return output
        with tempfile.TemporaryDirectory(dir=self.object_dir) as staging:
            partial = Path(staging) / output.name
            completed = subprocess.run(self._command(source, partial, optimization, extra_includes),
                                       capture_output=True, text=True)
            if completed.returncode != 0:
                raise RuntimeError(f"{self.target.name}: compiling {source} failed:\n{completed.stderr[-4000:]}")
            os.replace(partial, output)
        self.compiled += 1
        return output

    def objects_for(self, jobs: Sequence[tuple[Path, str | Sequence[str], Sequence[Path]]]) -> list[Path]:
        """Objects for ``(source, optimization, extra_includes)`` jobs, compiled in parallel."""
        with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
            return list(pool.map(lambda job: self.object_for(*job), jobs))

    def undefined_symbols(self, objects: Iterable[Path]) -> set[str]:
        """Symbols the objects use and none of them defines."""
        defined, used = set(), set()
        for line in subprocess.run([self.tools.nm, "-A", *map(str, objects)], capture_output=True, text=True,
                                   check=True).stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[-2] == "U":
                used.add(parts[-1])
            elif len(parts) >= 3:
                defined.add(parts[-1])
        return used - defined

    def library_closure(self, objects: list[Path]) -> list[Path]:
        """CMSIS-NN / CMSIS-DSP objects for every ``arm_*`` function the objects call, transitively.

        Each function lives in the library file of its name (``arm_convolve_s8`` in
        ``arm_convolve_s8.c``); tables live in the CommonTables files, found by their definitions.
        """
        sources = self.tools.sources
        library_files = {path.stem: path for root in ("cmsis_nn/Source", "cmsis_dsp/Source")
                         for path in sorted((sources / root).rglob("*.c"))}
        texts: dict[Path, str] = {}
        added: list[Path] = []
        done: set[Path] = set()
        while True:
            wanted = []
            for symbol in sorted(self.undefined_symbols(objects + added)):
                if not symbol.startswith(("arm", "twiddleCoef", "armBitRev", "armRecip", "rearranged_", "realCoef")):
                    continue
                # arm_cfft_init_128_f32 comes from CFFTINIT_F32(128, 64) in arm_cfft_init_f32.c
                sized = re.sub(r"_\d+(?=_|$)", "", symbol)
                source = (library_files.get(symbol) or self._defining_file(symbol, library_files, texts)
                          or library_files.get(sized))
                if source is not None and source not in done:
                    wanted.append(source)
                    done.add(source)
            if not wanted:
                return added
            added += self.objects_for([(path, KERNEL_OPTIMIZATION, ()) for path in wanted])

    @staticmethod
    def _defining_file(symbol: str, library_files: dict[str, Path], texts: dict[Path, str]) -> Path | None:
        """The library file defining ``symbol`` when its name is not the file's: a function whose
        definition starts a line (``int32_t arm_x_get_buffer_size(...)``) or a table
        (``const float32_t arm_x[N] ARM_DSP_TABLE_ATTRIBUTE =``)."""
        definition = re.compile(rf"^[A-Za-z_][\w \t\*]*\b{re.escape(symbol)}\s*(\([^;]*?\)\s*{{|\[[^;=]*?\][^;=]*=|[^;=(\[]*=)",
                                re.M | re.S)
        for path in library_files.values():
            if path not in texts:
                texts[path] = path.read_text(errors="replace")
            if definition.search(texts[path]):
                return path
        return None

    # -- linking -----------------------------------------------------------------------------

    def link_command(self, objects: Sequence[Path], elf: Path) -> list[str]:
        """The link command for the board: newlib with semihosting (rdimon), the project's startup code
        instead of the C runtime's (``-nostartfiles``), unused sections dropped."""
        return [self.tools.gxx, *self.target.cpu_flags, "--specs=rdimon.specs", "-nostartfiles",
                "-Wl,--gc-sections", "-Wl,--fatal-warnings", "-Wl,--no-warn-rwx-segments",
                f"-L{C_SOURCES}", f"-T{C_SOURCES / self.target.linker_script}",
                *map(str, objects), "-lm", "-o", str(elf)]

    def link(self, objects: Sequence[Path], elf: Path) -> Firmware:
        """Link the objects with the board's memory map into ``elf`` (atomically); sizes from ``size``."""
        elf = Path(elf)
        elf.parent.mkdir(parents=True, exist_ok=True)
        partial = elf.with_name(elf.name + ".partial")
        completed = subprocess.run(self.link_command(objects, partial), capture_output=True, text=True)
        if completed.returncode != 0:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"{self.target.name}: linking {elf.name} failed:\n{completed.stderr[-4000:]}")
        os.replace(partial, elf)
        sizes = subprocess.run([self.tools.size, "-A", "-d", str(elf)], capture_output=True, text=True,
                               check=True).stdout
        section = {parts[0]: int(parts[1]) for parts in (line.split() for line in sizes.splitlines())
                   if len(parts) >= 3 and parts[1].isdigit()}
        text = sum(section.get(name, 0) for name in (".text", ".ARM.exidx", ".rodata"))
        data = section.get(".data", 0)
        bss = section.get(".bss", 0)
        compile_commands = list(self.commands.values())
        link = self.link_command([Path(command[-1]) for command in compile_commands], elf)
        return Firmware(elf=elf, text=text, data=data, bss=bss, objects=len(objects), compiled=self.compiled,
                        commands=tuple(" ".join(command) for command in [*compile_commands, link]))

    def build(self, *, resolver_methods: Iterable[str], bundle_sources: Sequence[Path], bundle_dir: Path,
              elf: Path) -> Firmware:
        """Firmware from the framework, the model's kernels, the bundle's and the runner's sources."""
        tflm = self.tools.sources / "tflite-micro"
        framework = [(tflm / path, FRAMEWORK_OPTIMIZATION, ()) for path in FRAMEWORK_SOURCES]
        kernels = [(tflm / path, KERNEL_OPTIMIZATION, ())
                   for path in kernel_sources(self.tools.sources, resolver_methods)]
        own = [(Path(path), self.own_flags, (Path(bundle_dir), C_SOURCES)) for path in bundle_sources]
        objects = self.objects_for([*framework, *kernels, *own])
        objects += self.library_closure(objects)
        return self.link(objects, elf)
