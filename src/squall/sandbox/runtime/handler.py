"""Finding the user's handler: ``module.function`` (module may be ``dir/module`` or dotted), Lambda's init errors."""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from squall.sandbox.runtime.errors import InitError

__all__ = ["import_handler_module", "load_handler", "resolve_handler", "split_handler"]


def split_handler(handler: str) -> tuple[str, str]:
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise InitError("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {e}")
    if not modname or not fname:
        raise InitError("Runtime.MalformedHandlerName", f"Bad handler '{handler}': expected 'module.function'")
    return modname.replace("/", "."), fname


def import_handler_module(handler: str) -> ModuleType:
    modname, _ = split_handler(handler)
    shown = handler.rsplit(".", 1)[0]  # Lambda names the module as written in the handler (with its slashes)
    if modname.split(".")[0] in sys.builtin_module_names:
        raise InitError("Runtime.BuiltInModuleConflict", f"Cannot use built-in module {modname} as a handler module")
    if "" in modname.split("."):
        # a relative or empty part ('..handler', 'a/../b.handler', '/app.handler'): importlib would raise TypeError
        # or look outside the code; no such module can exist, which is what Lambda reports
        raise InitError("Runtime.ImportModuleError", f"Unable to import module '{shown}': No module named '{modname}'")
    try:
        return importlib.import_module(modname)
    except SyntaxError as e:
        stack = traceback.format_list(
            [traceback.FrameSummary(e.filename or modname, e.lineno or 0, "<module>", line=e.text or "")]
        )
        raise InitError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}", stack)
    except ImportError as e:
        raise InitError("Runtime.ImportModuleError", f"Unable to import module '{shown}': {e}")
    except Exception as e:
        stack = traceback.format_list(traceback.extract_tb(e.__traceback__)[1:])
        raise InitError(type(e).__name__, str(e), stack)


def resolve_handler(module: ModuleType, handler: str) -> Callable[..., Any]:
    modname, fname = split_handler(handler)
    func = getattr(module, fname, None)
    if func is None:
        raise InitError("Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'")
    if not callable(func):
        raise InitError("Runtime.HandlerNotFound", f"Handler '{fname}' on module '{modname}' is not callable")
    return func  # type: ignore[no-any-return,unused-ignore]


def load_handler(handler: str) -> Callable[..., Any]:
    return resolve_handler(import_handler_module(handler), handler)
