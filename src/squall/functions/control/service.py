"""``FunctionService``: the Lambda control plane (everything in Lambda's API except Invoke)."""

from __future__ import annotations

from squall.functions.control.concurrency import ConcurrencyMixin
from squall.functions.control.functions import FunctionsMixin
from squall.functions.control.invoke_configs import InvokeConfigsMixin
from squall.functions.control.layers import LayersMixin
from squall.functions.control.versions import VersionsMixin

__all__ = ["FunctionService"]


class FunctionService(FunctionsMixin, VersionsMixin, ConcurrencyMixin, InvokeConfigsMixin, LayersMixin):
    """Lambda's control-plane operations with Lambda's validation and messages.

    ``FunctionService(store, code_store, *, region, account_id, clock, on_change=None, public_url="")``.

    Every operation is a coroutine taking the request as Lambda's JSON shape (a mapping with Lambda's member
    names; ``ZipFile`` as base64 text or bytes) and returning Lambda's response shape.  Errors are
    ``squall.core.errors.SquallError`` subclasses whose ``.code`` is Lambda's exception name.

    Runtimes: only those whose interpreter is installed (``validation.AVAILABLE_RUNTIMES``: the server's own
    Python); another ``python3.x`` is refused with InvalidParameterValueException listing the available ones.

    ``on_change`` callbacks (sync or async) get ``(function name, qualifier)`` after each committed change that
    makes running instances or routing stale: ``"$LATEST"`` after code, configuration or squall-tag changes; the
    version number after PublishVersion or a version's deletion; the alias name after alias changes; the
    qualifier after provisioned concurrency changes; every qualifier (``$LATEST``, versions, aliases) when a
    function is deleted.  Reserved concurrency and event invoke configs are only stored (read them from the
    store).  A failing callback is logged and does not fail the request.
    """
