"""crank's own dependency kinds, registered through the same hook a plugin uses.

Kept import-light: this module is loaded with every built-in plugin, the
checkers themselves are imported only when the hook is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crank.hookspecs import hookimpl

if TYPE_CHECKING:
    from crank.plugin import RegisterDependencyChecker


@hookimpl(tryfirst=True)
def crank_register_dependency_checkers(register: RegisterDependencyChecker) -> None:
    from crank.testing.gpu_checks import check_gpu, check_onnxruntime
    from crank.testing.python_checks import check_distribution, check_module
    from crank.testing.system_checks import check_executable, check_redis, check_tcp

    register("module", check_module)
    register("dist", check_distribution)
    register("exe", check_executable)
    register("gpu", check_gpu)
    register("nvidia-gpu", check_gpu)
    register("onnxruntime", check_onnxruntime)
    register("redis", check_redis)
    register("tcp", check_tcp)
