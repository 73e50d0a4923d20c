"""Every built-in kind against the real thing: modules, programs, Redis, onnxruntime."""

from __future__ import annotations

import socket
import sys
import threading
import types
from typing import TYPE_CHECKING

import numpy
import pytest

from crank.errors import UsageError
from crank.hookspecs import hookimpl
from crank.plugins import get_plugin_manager
from crank.testing import ensure_dependency
from crank.testing.dependencies import (
    DependencyResult,
    check_dependency,
    clear_dependency_cache,
    dependency_registry,
)

from .conftest import write_executable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from crank.testing.specs import DependencySpec


# --- Python modules ----------------------------------------------------------------


def test_installed_module_with_satisfied_version() -> None:
    result = check_dependency("numpy>=1.26")
    assert result.available and not result.broken
    assert result.version == numpy.__version__
    assert (result.kind, result.name) == ("module", "numpy")


def test_module_too_old_is_missing_with_an_upgrade_hint() -> None:
    result = check_dependency("numpy>=999")
    assert not result.available and not result.broken
    assert result.reason == f"numpy {numpy.__version__} is installed but >=999 is required"
    assert result.hint == "pip install 'numpy>=999'"


def test_absent_module_is_missing_with_the_distribution_in_the_hint() -> None:
    result = check_dependency("sklearn_not_here")
    assert result.missing_only
    assert result.reason == "Python module 'sklearn_not_here' is not installed"
    assert result.hint == "pip install sklearn_not_here"


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "mods"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_import_error_that_is_not_module_not_found_is_broken(module_dir: Path) -> None:
    (module_dir / "crank_native_ext.py").write_text(
        "raise ImportError('libcrankfake.so.1: cannot open shared object file')\n"
    )
    result = check_dependency("crank_native_ext")
    assert result.broken and not result.available
    assert isinstance(result.error, ImportError)
    assert "libcrankfake.so.1" in result.reason


def test_a_missing_inner_dependency_is_broken_not_missing(module_dir: Path) -> None:
    (module_dir / "crank_half_installed.py").write_text("import crank_its_missing_helper\n")
    result = check_dependency("crank_half_installed")
    assert result.broken
    assert isinstance(result.error, ModuleNotFoundError)
    assert result.reason.startswith(
        "Python module 'crank_half_installed' is installed but importing it failed"
    )


def test_any_exception_at_import_is_broken(module_dir: Path) -> None:
    (module_dir / "crank_explodes.py").write_text(
        "raise RuntimeError('CUDA driver version is insufficient')\n"
    )
    result = check_dependency("crank_explodes")
    assert result.broken
    assert result.reason == (
        "Python module 'crank_explodes' raised RuntimeError on import: "
        "CUDA driver version is insufficient"
    )


def test_a_module_that_exits_at_import_is_broken(module_dir: Path) -> None:
    """SystemExit escaped the check: a test failed without crank's report, and outside
    pytest (a worker's self_test()) it ended the whole process."""
    (module_dir / "crank_exits.py").write_text("import sys\nsys.exit('no licence file found')\n")
    result = check_dependency("crank_exits")
    assert result.broken
    assert result.reason == (
        "Python module 'crank_exits' called sys.exit() on import: no licence file found"
    )
    assert isinstance(result.error, SystemExit)


def _fake_torch(
    module_dir: Path, *, available: bool, cuda_build: str | None, op_fails: bool = False
) -> None:
    """A stand-in torch package: no GPU can exist on this machine, so CUDA is simulated."""
    pkg = module_dir / "torch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "__version__ = '2.5.0'\n"
        "from . import cuda, version\n"
        "class _T:\n"
        "    def add_(self, n):\n"
        f"        if {op_fails!r}: raise RuntimeError('CUDA error: no kernel image is available')\n"
        "        return self\n"
        "def zeros(n, device=None):\n"
        "    return _T()\n"
    )
    (pkg / "cuda.py").write_text(
        f"def is_available(): return {available!r}\n"
        "def synchronize(): pass\n"
        "def get_device_name(i): return 'NVIDIA H100'\n"
    )
    (pkg / "version.py").write_text(f"cuda = {cuda_build!r}\n")


def test_torch_cuda_on_a_cpu_only_build_is_missing(module_dir: Path) -> None:
    _fake_torch(module_dir, available=False, cuda_build=None)
    result = check_dependency("torch.cuda")
    assert result.missing_only
    assert result.reason == "torch 2.5.0 is a CPU-only build (torch.version.cuda is None)"


def test_torch_cuda_without_a_device_is_missing(module_dir: Path) -> None:
    _fake_torch(module_dir, available=False, cuda_build="12.4")
    result = check_dependency("torch.cuda")
    assert result.reason == "torch 2.5.0 is built for CUDA 12.4 but sees no usable CUDA device"


def test_torch_cuda_usable(module_dir: Path) -> None:
    _fake_torch(module_dir, available=True, cuda_build="12.4")
    result = check_dependency("torch.cuda")
    assert result.available
    assert result.reason == "torch.cuda on NVIDIA H100"


def test_torch_cuda_listed_but_failing_is_broken(module_dir: Path) -> None:
    _fake_torch(module_dir, available=True, cuda_build="12.4", op_fails=True)
    result = check_dependency("torch.cuda")
    assert result.broken
    assert "no kernel image is available" in result.reason


def test_distribution_kind() -> None:
    assert check_dependency("dist:pytest>=7").available
    missing = check_dependency("dist:nvidia-ml-py-not-here")
    assert missing.missing_only
    assert missing.hint == "pip install nvidia-ml-py-not-here"


# --- executables --------------------------------------------------------------------


def test_real_pandoc_and_its_version() -> None:
    result = check_dependency("exe:pandoc>=2.17")
    assert result.available
    assert result.version is not None and result.version.startswith("2.")


def test_executable_not_on_path() -> None:
    result = check_dependency("exe:crank-no-such-tool")
    assert result.missing_only
    assert result.reason == "executable 'crank-no-such-tool' is not on PATH"
    assert result.hint == "apt-get install crank-no-such-tool"


def test_version_read_from_version_output(fake_bin: Path) -> None:
    write_executable(fake_bin / "mytool", "echo 'mytool version 1.4.2 (build abc)'")
    assert check_dependency("exe:mytool>=1.4").version == "1.4.2"
    old = check_dependency("exe:mytool>=2")
    assert old.missing_only
    assert old.reason == "mytool 1.4.2 is installed but >=2 is required"


def test_binary_that_crashes_is_broken(fake_bin: Path) -> None:
    tool = write_executable(fake_bin / "crashy", "kill -SEGV $$")
    result = check_dependency("exe:crashy")
    assert result.broken
    assert result.reason == f"`{tool} --version` was killed by SIGSEGV"


def test_binary_whose_loader_fails_is_broken(fake_bin: Path) -> None:
    tool = write_executable(
        fake_bin / "sadtool", "echo 'error while loading shared libraries: libz.so.1' >&2; exit 127"
    )
    result = check_dependency("exe:sadtool")
    assert result.broken
    assert result.reason == (
        f"`{tool} --version` exited with status 127: "
        "error while loading shared libraries: libz.so.1"
    )


def test_a_file_that_cannot_be_executed_is_broken(fake_bin: Path) -> None:
    tool = fake_bin / "garbage"
    tool.write_bytes(b"\x7fELF\x00not really a program")
    tool.chmod(0o755)
    result = check_dependency("exe:garbage")
    assert result.broken
    assert result.reason.startswith(f"`{tool} --version` cannot run: [Errno 8] Exec format error")


def test_a_script_whose_interpreter_is_gone_is_broken(fake_bin: Path) -> None:
    tool = fake_bin / "orphan"
    tool.write_text("#!/nonexistent/interpreter\n")
    tool.chmod(0o755)
    result = check_dependency("exe:orphan")
    assert result.broken
    assert f"`{tool} --version` cannot run" in result.reason


# Real programs that refuse `--version` (java takes -version, ffmpeg -version, go version)
REFUSES_DOUBLE_DASH = 'case "$1" in --version) echo "unknown option: $1" >&2; exit 1;; esac\n'


def test_a_program_that_refuses_version_flags_but_runs_is_present(fake_bin: Path) -> None:
    tool = write_executable(fake_bin / "javaish", REFUSES_DOUBLE_DASH + "exit 2")
    result = check_dependency("exe:javaish")
    assert (result.available, result.broken) == (True, False)
    assert result.reason == f"{tool} runs"
    assert result.version is None  # not read: no constraint asked for it


def test_the_version_is_read_with_the_usual_flags_in_turn(fake_bin: Path) -> None:
    write_executable(
        fake_bin / "javaish",
        REFUSES_DOUBLE_DASH
        + 'if [ "$1" = -version ]; then echo \'openjdk version "17.0.9" 2023-10-17\' >&2; '
        "exit 0; fi\nexit 2",
    )
    result = check_dependency("exe:javaish>=17")
    assert (result.available, result.version) == (True, "17.0.9")
    assert check_dependency("exe:javaish>=21").reason == (
        "javaish 17.0.9 is installed but >=21 is required"
    )
    write_executable(fake_bin / "goish", 'if [ "$1" = version ]; then echo "goish go1.22.3"; fi')
    assert check_dependency("exe:goish>=1.21").version == "1.22.3"


def test_a_copyright_year_is_not_taken_for_the_version(fake_bin: Path) -> None:
    """zip --version starts with its copyright years: crank read 'zip 1990', so zip>=3.1
    passed on zip 3.0."""
    write_executable(
        fake_bin / "zipish",
        "echo \"Copyright (c) 1990-2008 Info-ZIP - Type 'zip -L' for software license.\"\n"
        "echo 'This is Zip 3.0 (July 5th 2008), by Info-ZIP.'",
    )
    result = check_dependency("exe:zipish>=3.1")
    assert (result.available, result.version) == (False, "3.0")
    assert result.reason == "zipish 3.0 is installed but >=3.1 is required"


def test_a_version_no_flag_prints_cannot_be_checked_and_says_how_to_tell(fake_bin: Path) -> None:
    tool = write_executable(fake_bin / "quiet", "exit 0")
    result = check_dependency("exe:quiet>=1")
    assert result.missing_only
    assert result.reason == (
        f"quiet runs, but `{tool} --version`, `{tool} -version`, `{tool} -V`, `{tool} version` "
        "printed no version, so >=1 cannot be checked"
    )
    assert result.hint is not None and "version_command" in result.hint


def test_a_version_command_of_its_own(fake_bin: Path) -> None:
    write_executable(fake_bin / "odd", 'if [ "$1" = --show-release ]; then echo "odd 3.2"; fi')
    result = check_dependency("exe:odd>=3", version_command="odd --show-release")
    assert (result.available, result.version) == (True, "3.2")
    assert ensure_dependency("exe:odd>=3", version_command=["odd", "--show-release"]).available
    assert check_dependency("exe:odd>=3").missing_only  # without it: no flag shows one


def test_a_version_command_that_is_not_on_path_blames_the_command(fake_bin: Path) -> None:
    """It said odd was broken and to reinstall it, when the version command had a typo."""
    write_executable(fake_bin / "odd", 'echo "odd release 3.2"')
    result = check_dependency("exe:odd>=3", version_command="odd-tool --release")
    assert result.broken  # not a skip: the check cannot be made as written
    assert (
        result.reason
        == "its version command `odd-tool --release` cannot run: 'odd-tool' is not on PATH"
    )
    assert result.hint == (
        "correct the version command given for odd (version_command in the manifest's "
        "system dependency, or ensure_dependency's version_command=)"
    )


def test_an_empty_version_command_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="names no program"):
        check_dependency("exe:sh>=1", version_command="  ")


# --- GPU ------------------------------------------------------------------------------


@pytest.fixture
def no_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ModuleNotFoundError


def test_gpu_missing_without_nvml_or_nvidia_smi(
    no_pynvml: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = check_dependency("gpu")
    assert result.missing_only
    assert result.reason == "no NVIDIA GPU: pynvml is not installed and nvidia-smi is not on PATH"


def test_gpu_found_through_nvidia_smi(no_pynvml: None, fake_bin: Path) -> None:
    # A GPU cannot exist here: nvidia-smi is a stand-in printing what the real one prints.
    write_executable(
        fake_bin / "nvidia-smi", "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)'"
    )
    result = check_dependency("nvidia-gpu")
    assert result.available
    assert result.reason == "nvidia-smi -L lists 1 GPU(s): NVIDIA H100 80GB HBM3"


def test_nvidia_smi_without_a_driver_is_broken(no_pynvml: None, fake_bin: Path) -> None:
    write_executable(
        fake_bin / "nvidia-smi",
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\n'
        "exit 9",
    )
    result = check_dependency("gpu")
    assert result.broken
    assert "couldn't communicate with the NVIDIA driver" in result.reason


@pytest.mark.parametrize(
    ("spec", "written"), [("gpu>=2", ">=2"), ("nvidia-gpu==1", "==1"), ("gpu:H100", ":H100")]
)
def test_a_gpu_spec_with_a_version_or_target_is_a_usage_error(spec: str, written: str) -> None:
    # a GPU has no version: "gpu>=2" was reported missing on every machine, GPU or not
    with pytest.raises(UsageError) as caught:
        check_dependency(spec)
    assert caught.value.message == (
        f"dependency spec {spec!r}: {spec.split(':')[0].split('>')[0].split('=')[0]} "
        f"takes no {written!r}"
    )
    assert caught.value.hint is not None
    assert "onnxruntime:CUDAExecutionProvider" in caught.value.hint


class FakeNVMLError(Exception):
    """What pynvml raises: an NVML return code in ``value``."""

    MESSAGES = {9: "Driver Not Loaded", 12: "NVML Shared Library Not Found"}

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return self.MESSAGES[self.value]


def fake_pynvml(monkeypatch: pytest.MonkeyPatch, init_error: int) -> None:
    """pynvml installed (no GPU can exist here), its nvmlInit failing with that code."""
    module = types.ModuleType("pynvml")

    def nvml_init() -> None:
        raise FakeNVMLError(init_error)

    module.nvmlInit = nvml_init  # type: ignore[attr-defined]
    module.NVML_ERROR_DRIVER_NOT_LOADED = 9  # type: ignore[attr-defined]
    module.NVML_ERROR_LIBRARY_NOT_FOUND = 12  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", module)


NO_DRIVER_SMI = (
    'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9'
)


@pytest.mark.parametrize("through", ["pynvml", "nvidia-smi"])
def test_a_driver_that_is_not_loaded_is_broken_whether_pynvml_is_installed_or_not(
    monkeypatch: pytest.MonkeyPatch, fake_bin: Path, through: str
) -> None:
    """nvidia-smi failing counted as broken, NVML saying the same as missing: the same
    machine failed or skipped depending on whether pynvml was installed."""
    write_executable(fake_bin / "nvidia-smi", NO_DRIVER_SMI)
    if through == "pynvml":
        fake_pynvml(monkeypatch, init_error=9)
    else:
        monkeypatch.setitem(sys.modules, "pynvml", None)
    result = check_dependency("gpu")
    assert (result.available, result.broken) == (False, True)
    assert result.hint == "check the NVIDIA driver installation"


@pytest.mark.parametrize("smi", ["none", "failing"])
def test_nvml_without_its_library_answers_as_nvidia_smi_does(
    monkeypatch: pytest.MonkeyPatch, fake_bin: Path, tmp_path: Path, smi: str
) -> None:
    """pynvml installed on a machine without the driver library knows nothing more: the
    answer is the one the machine gives without pynvml."""
    fake_pynvml(monkeypatch, init_error=12)
    if smi == "failing":
        write_executable(fake_bin / "nvidia-smi", NO_DRIVER_SMI)
        result = check_dependency("gpu")
        assert result.broken
        assert "couldn't communicate with the NVIDIA driver" in result.reason
    else:
        monkeypatch.setenv("PATH", str(tmp_path))
        result = check_dependency("gpu")
        assert result.missing_only
        assert result.reason == (
            "no NVIDIA GPU: NVML could not initialise (NVML Shared Library Not Found) "
            "and nvidia-smi is not on PATH"
        )


# --- onnxruntime providers ------------------------------------------------------------------


def test_cpu_provider_really_used() -> None:
    result = check_dependency("onnxruntime:CPUExecutionProvider")
    assert result.available
    assert result.reason.endswith(": a session ran all 2 nodes on CPUExecutionProvider")


def test_cuda_provider_on_the_cpu_build_is_missing_and_the_warning_is_caught() -> None:
    # filterwarnings=error is on: the UserWarning onnxruntime emits must not escape.
    result = check_dependency("onnxruntime:CUDAExecutionProvider")
    assert result.missing_only
    assert (
        "does not offer CUDAExecutionProvider; a session ran all 2 nodes on CPUExecutionProvider"
        in result.reason
    )
    assert "UserWarning: Specified provider 'CUDAExecutionProvider'" in result.reason
    assert result.hint is not None and "onnxruntime-gpu" in result.hint


@pytest.mark.parametrize(
    ("spec", "meant"),
    [
        ("onnxruntime:CUDA", "CUDAExecutionProvider"),
        ("onnxruntime:cudaexecutionprovider", "CUDAExecutionProvider"),
        ("onnxruntime:TensorRTExecutionProvider", "TensorrtExecutionProvider"),
    ],
)
def test_a_provider_onnxruntime_does_not_know_is_a_usage_error(spec: str, meant: str) -> None:
    """A misspelt provider was 'missing': its tests skipped even on a GPU machine."""
    with pytest.raises(UsageError) as caught:
        check_dependency(spec)
    provider = spec.partition(":")[2]
    assert caught.value.message.startswith(
        f"dependency spec {spec!r}: onnxruntime knows no provider {provider!r}"
    )
    assert caught.value.hint == f"did you mean 'onnxruntime:{meant}'?"


def test_bare_onnxruntime_is_the_module() -> None:
    result = check_dependency("onnxruntime>=1.17")
    assert result.available and result.kind == "onnxruntime" and result.version


def test_a_probe_runs_the_model_and_reads_where_each_node_ran() -> None:
    import onnxruntime

    from crank.testing.onnx_providers import probe_provider

    probe = probe_provider("CPUExecutionProvider", onnxruntime)
    assert probe.in_use == ("CPUExecutionProvider",)
    # onnxruntime's own profile of a real run, one entry per node of the tiny model
    assert probe.placement.nodes == (
        ("matmul", "MatMul", "CPUExecutionProvider"),
        ("relu", "Relu", "CPUExecutionProvider"),
    )
    assert probe.usable and not probe.fell_back


def test_a_provider_that_got_only_some_nodes_is_not_usable() -> None:
    from crank.testing.onnx_providers import NodePlacement, ProviderProbe

    placement = NodePlacement(
        (
            ("hidden", "Gemm", "CUDAExecutionProvider"),
            ("relu", "Relu", "CUDAExecutionProvider"),
            ("scaler", "Scaler", "CPUExecutionProvider"),
        )
    )
    assert placement.provider == "CUDAExecutionProvider+CPUExecutionProvider"
    assert placement.describe() == (
        "2 nodes on CUDAExecutionProvider (Gemm, Relu) and 1 on CPUExecutionProvider (Scaler)"
    )
    probe = ProviderProbe(
        requested="CUDAExecutionProvider",
        build="onnxruntime-gpu 1.31.1",
        listed=("CUDAExecutionProvider", "CPUExecutionProvider"),
        in_use=("CUDAExecutionProvider", "CPUExecutionProvider"),
        placement=placement,
    )
    assert not probe.usable  # the session got CUDA, but not every node ran there
    assert probe.explanation() == (
        "onnxruntime-gpu 1.31.1 lists CUDAExecutionProvider, but a session asked for it fell "
        "back and ran 2 nodes on CUDAExecutionProvider (Gemm, Relu) and 1 on "
        "CPUExecutionProvider (Scaler)"
    )


def test_tiny_model_matches_the_embedded_fallback() -> None:
    import base64

    from crank.testing import onnx_providers

    assert onnx_providers.tiny_model_bytes() == base64.b64decode(onnx_providers._TINY_MODEL)


# --- services --------------------------------------------------------------------------


def test_redis_reachable(redis_url: str) -> None:
    result = check_dependency(redis_url)
    assert result.available
    assert result.reason.endswith("answers PING")


def test_redis_with_a_password_it_does_not_need_is_broken(redis_url: str) -> None:
    result = check_dependency(redis_url.replace("redis://", "redis://:wrong@"))
    assert result.broken
    assert "refused AUTH" in result.reason
    assert "wrong" not in result.name


def test_nothing_listening_is_missing() -> None:
    from .conftest import free_port

    port = free_port()
    result = check_dependency(f"redis://127.0.0.1:{port}")
    assert result.missing_only
    assert result.reason.startswith(f"nothing answers at 127.0.0.1:{port}:")
    assert (
        result.hint == f"start Redis: redis-server --bind 127.0.0.1 --port {port} "
        "(apt-get install redis-server)"
    )


@pytest.fixture
def not_redis() -> Iterator[int]:
    """A TCP server that answers like an HTTP server, whatever it is sent."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(100)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    thread.join(timeout=5)
    server.close()


def test_something_else_on_the_port_is_broken(not_redis: int) -> None:
    result = check_dependency(f"redis://127.0.0.1:{not_redis}")
    assert result.broken
    assert result.reason == (
        f"something listens at 127.0.0.1:{not_redis} but does not answer PING like Redis: "
        "'HTTP/1.1 400 Bad Request'"
    )


def test_tcp_kind(redis_url: str) -> None:
    assert check_dependency(redis_url.replace("redis://", "tcp://")).available


# --- the registry and plugins ------------------------------------------------------------


class LibreOfficePlugin:
    """An inline plugin adding a ``libreoffice`` kind, as a third party would."""

    def __init__(self, found: bool) -> None:
        self.found = found

    def check(self, spec: DependencySpec) -> DependencyResult:
        if self.found:
            return DependencyResult.found(spec, version="7.5.1")
        return DependencyResult.missing(
            spec, "soffice is not installed", hint="apt-get install libreoffice-core"
        )

    @hookimpl
    def crank_register_dependency_checkers(self, register: Callable[[str, object], None]) -> None:
        register("libreoffice", lambda spec: self.check(spec))


@pytest.fixture
def libreoffice_plugin() -> Iterator[LibreOfficePlugin]:
    plugin = LibreOfficePlugin(found=False)
    manager = get_plugin_manager()
    manager.register(plugin, name="test-libreoffice")
    clear_dependency_cache()
    yield plugin
    manager.unregister("test-libreoffice")
    clear_dependency_cache()


def test_a_plugin_adds_a_kind(libreoffice_plugin: LibreOfficePlugin) -> None:
    assert "libreoffice" in dependency_registry().checkers
    result = check_dependency("libreoffice")
    assert (result.kind, result.name, result.available) == ("libreoffice", "libreoffice", False)
    assert result.hint == "apt-get install libreoffice-core"
    assert check_dependency("libreoffice:calc").name == "libreoffice:calc"


def test_results_are_cached_until_cleared(libreoffice_plugin: LibreOfficePlugin) -> None:
    first = check_dependency("libreoffice")
    libreoffice_plugin.found = True
    assert check_dependency("libreoffice") is first
    clear_dependency_cache()
    assert check_dependency("libreoffice").available


def test_a_checker_that_raises_is_reported_as_broken(libreoffice_plugin: LibreOfficePlugin) -> None:
    def explode(spec: DependencySpec) -> DependencyResult:
        raise KeyError("soffice")

    libreoffice_plugin.check = explode  # type: ignore[method-assign]
    result = check_dependency("libreoffice")
    assert result.broken
    assert "raised KeyError: 'soffice'" in result.reason
    assert result.reason.startswith(
        "the 'libreoffice' dependency checker of plugin 'test-libreoffice' ("
    )


class BadKindPlugin:
    def __init__(self, kind: str, checker: object) -> None:
        self.kind, self.checker = kind, checker

    @hookimpl
    def crank_register_dependency_checkers(self, register: Callable[[str, object], None]) -> None:
        register(self.kind, self.checker)


@pytest.mark.parametrize(
    ("kind", "checker", "message"),
    [
        (
            "Libre Office",
            lambda spec: None,
            "registered an unusable dependency checker, which was skipped: "
            "dependency kind 'Libre Office' is not a valid kind name",
        ),
        (
            "libreoffice",
            "soffice",
            "registered an unusable dependency checker, which was skipped: "
            "dependency checker for kind 'libreoffice' is not callable: 'soffice'",
        ),
        (
            "exe",
            lambda spec: None,
            "registered dependency kind 'exe', which was skipped: dependency kind 'exe' is "
            "registered twice ('crank.testing.builtin_checkers' registered it first)",
        ),
    ],
)
def test_bad_registrations_are_skipped_and_named(kind: str, checker: object, message: str) -> None:
    from crank.testing.dependencies import dependency_registry

    manager = get_plugin_manager()
    manager.register(BadKindPlugin(kind, checker), name="test-bad-kind")
    clear_dependency_cache()
    try:
        # never fatal, and no warning inside a test suite: the other kinds still work
        assert check_dependency("numpy").available
        registry = dependency_registry()
        assert "libreoffice" not in registry.checkers
        assert registry.checkers["exe"].__module__ == "crank.testing.system_checks"
        assert registry.skipped == (f"crank plugin 'test-bad-kind' {message}",)
        assert [str(p) for p in manager.problems("test-bad-kind")] == list(registry.skipped)
        # a spec of a kind that may have been lost names the skipped registration
        with pytest.raises(UsageError) as caught:
            check_dependency("libreoffice:calc")
        assert caught.value.hint is not None
        assert caught.value.hint.endswith(f"skipped: crank plugin 'test-bad-kind' {message}")
    finally:
        manager.unregister("test-bad-kind")
        clear_dependency_cache()


def test_an_unknown_kind_names_plugins_that_failed_to_load() -> None:
    from crank.testing.dependencies import DependencyRegistry

    registry = DependencyRegistry({}, failed_plugins=("office (ModuleNotFoundError: uno)",))
    with pytest.raises(UsageError) as caught:
        registry.check("libreoffice:calc")
    assert caught.value.hint is not None
    assert caught.value.hint.endswith("plugins not loaded: office (ModuleNotFoundError: uno)")


def test_a_manifest_system_dependency_brings_its_version_command(
    fake_bin: Path, tmp_path: Path
) -> None:
    from crank.manifest import load_manifest
    from crank.testing.selftest import check_system_dependency

    tool = write_executable(
        fake_bin / "odd", 'if [ "$1" = --show-release ]; then echo "odd 3.2"; fi'
    )
    manifest = tmp_path / "crank.yaml"
    manifest.write_text(
        "apiVersion: crank.dev/v1\nkind: Worker\nmetadata: {name: odd-worker, version: 1.0.0}\n"
        "worker: {entrypoint: 'odd_worker:Odd'}\n"
        "capabilities:\n  - {id: odd.echo, version: 1.0.0, input: {type: object}, "
        "output: {type: object}}\n"
        "dependencies:\n  system:\n"
        "    - {name: odd, check: 'exe:odd>=3', version_command: 'odd --show-release'}\n",
        encoding="utf-8",
    )
    (dep,) = load_manifest(manifest).dependencies.system
    assert dep.version_command == "odd --show-release"
    assert check_system_dependency(dep).as_dict() == {
        "kind": "dependency",
        "name": "odd (exe:odd>=3)",
        "status": "passed",
        "detail": f"{tool} 3.2",
        "hint": None,
    }


def test_a_checker_that_exits_is_reported_as_broken(
    libreoffice_plugin: LibreOfficePlugin,
) -> None:
    """sys.exit() in a checker escaped the broken-dependency report and ended the run."""

    def exits(spec: DependencySpec) -> DependencyResult:
        raise SystemExit(3)

    libreoffice_plugin.check = exits  # type: ignore[method-assign]
    result = check_dependency("libreoffice")
    assert (result.available, result.broken) == (False, True)
    assert result.reason.endswith("raised SystemExit: 3")
    assert isinstance(result.error, SystemExit)


def test_a_checker_interrupted_by_the_user_still_stops(
    libreoffice_plugin: LibreOfficePlugin,
) -> None:
    def interrupted(spec: DependencySpec) -> DependencyResult:
        raise KeyboardInterrupt

    libreoffice_plugin.check = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        check_dependency("libreoffice")


@pytest.mark.parametrize("returned", [None, True, "found"])
def test_a_checker_that_returns_something_else_is_reported_as_broken(
    libreoffice_plugin: LibreOfficePlugin, returned: object
) -> None:
    libreoffice_plugin.check = lambda spec: returned  # type: ignore[method-assign,assignment,return-value]
    result = check_dependency("libreoffice")
    assert (result.available, result.broken) == (False, True)
    assert result.reason.startswith(
        "the 'libreoffice' dependency checker of plugin 'test-libreoffice' ("
    )
    assert result.reason.endswith(f"returned {returned!r}, not a DependencyResult")
    assert result.hint is not None and "DependencyResult.found(spec)" in result.hint


def test_with_crank_own_checkers_blocked_a_spec_is_a_usage_error_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crank.plugins import reset_plugin_manager

    monkeypatch.setenv("CRANK_DISABLE_PLUGINS", "crank.testing.builtin_checkers")
    reset_plugin_manager()
    clear_dependency_cache()
    try:
        with pytest.raises(UsageError) as caught:
            check_dependency("numpy")
    finally:
        monkeypatch.delenv("CRANK_DISABLE_PLUGINS")
        reset_plugin_manager()
        clear_dependency_cache()
    assert caught.value.message == "dependency spec 'numpy': no checker for kind 'module'"
    assert caught.value.hint is not None
    assert "crank.testing.builtin_checkers (blocked by CRANK_DISABLE_PLUGINS)" in caught.value.hint


@pytest.mark.parametrize(
    ("version", "available", "reason"),
    [
        ("7.5.1", True, "libreoffice is available"),
        ("6.4", False, "libreoffice 6.4 is installed but >=7 is required"),
        (
            None,
            False,
            "libreoffice is installed but its version is unknown, so >=7 cannot be checked",
        ),
    ],
)
def test_a_plugin_kind_constraint_is_compared_with_the_version_its_checker_found(
    libreoffice_plugin: LibreOfficePlugin, version: str | None, available: bool, reason: str
) -> None:
    # the checker never looks at spec.constraint
    libreoffice_plugin.check = lambda spec: DependencyResult.found(spec, version=version)  # type: ignore[method-assign]
    result = check_dependency("libreoffice>=7")
    assert (result.available, result.broken, result.reason) == (available, False, reason)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tcp://127.0.0.1", "dependency spec 'tcp://127.0.0.1' names no port"),
        (
            "tcp://127.0.0.1:5432x",
            "dependency spec 'tcp://127.0.0.1:5432x' is not a valid URL: Port could not be cast "
            "to integer value as '5432x'",
        ),
        (
            "redis://:secret@127.0.0.1:99999",
            "dependency spec 'redis://:***@127.0.0.1:99999' is not a valid URL: Port out of range "
            "0-65535",
        ),
    ],
)
def test_a_service_url_written_wrong_is_a_usage_error_not_a_broken_checker(
    spec: str, message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        check_dependency(spec)
    assert caught.value.message == message
    assert "secret" not in str(caught.value)
