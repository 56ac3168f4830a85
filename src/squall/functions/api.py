"""Lambda's control-plane REST API (rest-json, API version 2015-03-31) as Starlette routes.

``lambda_routes(service)`` returns routes for the exact paths and methods of botocore's Lambda model, every
operation except Invoke (``POST /2015-03-31/functions/{FunctionName}/invocations`` is left free for
``squall.functions.invoke_api``), plus ``GET /_squall/code/{hex}``, which serves the zips GetFunction's
``Code.Location`` points at.  No authentication here: the application puts SigV4 (and auth for the code route)
in front.

Bodies are read and errors rendered by ``squall.aws.json_api``.  Request bodies must be JSON objects of at most
70167211 bytes (Lambda's limit); anything else is refused before the service sees it.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.routing import Route

from squall.aws.json_api import LAMBDA_MAX_BODY_BYTES, Operation, lambda_endpoint, read_json_object
from squall.core.errors import InvalidParameterValue
from squall.functions.control import FunctionService

__all__ = ["MAX_BODY_BYTES", "lambda_routes"]

log = logging.getLogger(__name__)

#: Lambda refuses control-plane request bodies larger than this (a 50 MB zip, base64-encoded, plus JSON)
MAX_BODY_BYTES = LAMBDA_MAX_BODY_BYTES

#: (status, JSON payload or None for an empty body)
Result = tuple[int, Any]


def _fn(request: Request) -> str:
    return unquote(request.path_params["FunctionName"])


def _query(request: Request, key: str) -> str | None:
    value = request.query_params.get(key)
    return None if value is None or value == "" else value


def _max_items(request: Request) -> int | None:
    value = _query(request, "MaxItems")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidParameterValue(
            f"1 validation error detected: Value '{value}' at 'maxItems' failed to satisfy constraint: Member must "
            "be an integer"
        )


async def _body(request: Request, operation: str) -> dict[str, Any]:
    """The JSON object of the request body ({} when empty)."""
    return await read_json_object(request, MAX_BODY_BYTES, operation)


class _Api:
    """One bound method per Lambda operation: parse the HTTP request, call the service, pick the status."""

    def __init__(self, service: FunctionService) -> None:
        self.s = service

    # functions
    async def create_function(self, r: Request) -> Result:
        return 201, await self.s.create_function(await _body(r, "CreateFunction"))

    async def list_functions(self, r: Request) -> Result:
        return 200, await self.s.list_functions(
            marker=_query(r, "Marker"), max_items=_max_items(r), function_version=_query(r, "FunctionVersion")
        )

    async def get_function(self, r: Request) -> Result:
        return 200, await self.s.get_function(_fn(r), _query(r, "Qualifier"))

    async def delete_function(self, r: Request) -> Result:
        await self.s.delete_function(_fn(r), _query(r, "Qualifier"))
        return 204, None

    async def get_function_configuration(self, r: Request) -> Result:
        return 200, await self.s.get_function_configuration(_fn(r), _query(r, "Qualifier"))

    async def update_function_configuration(self, r: Request) -> Result:
        body = await _body(r, "UpdateFunctionConfiguration")
        return 200, await self.s.update_function_configuration(_fn(r), body)

    async def update_function_code(self, r: Request) -> Result:
        return 200, await self.s.update_function_code(_fn(r), await _body(r, "UpdateFunctionCode"))

    # versions
    async def publish_version(self, r: Request) -> Result:
        return 201, await self.s.publish_version(_fn(r), await _body(r, "PublishVersion"))

    async def list_versions(self, r: Request) -> Result:
        return 200, await self.s.list_versions_by_function(_fn(r), marker=_query(r, "Marker"), max_items=_max_items(r))

    # aliases
    async def create_alias(self, r: Request) -> Result:
        return 201, await self.s.create_alias(_fn(r), await _body(r, "CreateAlias"))

    async def list_aliases(self, r: Request) -> Result:
        return 200, await self.s.list_aliases(
            _fn(r),
            function_version=_query(r, "FunctionVersion"),
            marker=_query(r, "Marker"),
            max_items=_max_items(r),
        )

    async def get_alias(self, r: Request) -> Result:
        return 200, await self.s.get_alias(_fn(r), unquote(r.path_params["Name"]))

    async def update_alias(self, r: Request) -> Result:
        body = await _body(r, "UpdateAlias")
        return 200, await self.s.update_alias(_fn(r), unquote(r.path_params["Name"]), body)

    async def delete_alias(self, r: Request) -> Result:
        await self.s.delete_alias(_fn(r), unquote(r.path_params["Name"]))
        return 204, None

    # reserved concurrency
    async def put_concurrency(self, r: Request) -> Result:
        return 200, await self.s.put_function_concurrency(_fn(r), await _body(r, "PutFunctionConcurrency"))

    async def get_concurrency(self, r: Request) -> Result:
        return 200, await self.s.get_function_concurrency(_fn(r))

    async def delete_concurrency(self, r: Request) -> Result:
        await self.s.delete_function_concurrency(_fn(r))
        return 204, None

    # provisioned concurrency
    async def put_provisioned(self, r: Request) -> Result:
        body = await _body(r, "PutProvisionedConcurrencyConfig")
        return 202, await self.s.put_provisioned_concurrency_config(_fn(r), _query(r, "Qualifier"), body)

    async def get_provisioned(self, r: Request) -> Result:
        if r.query_params.get("List") == "ALL":
            return 200, await self.s.list_provisioned_concurrency_configs(
                _fn(r), marker=_query(r, "Marker"), max_items=_max_items(r)
            )
        return 200, await self.s.get_provisioned_concurrency_config(_fn(r), _query(r, "Qualifier"))

    async def delete_provisioned(self, r: Request) -> Result:
        await self.s.delete_provisioned_concurrency_config(_fn(r), _query(r, "Qualifier"))
        return 204, None

    # event invoke configs
    async def put_eic(self, r: Request) -> Result:
        body = await _body(r, "PutFunctionEventInvokeConfig")
        return 200, await self.s.put_function_event_invoke_config(_fn(r), _query(r, "Qualifier"), body)

    async def update_eic(self, r: Request) -> Result:
        body = await _body(r, "UpdateFunctionEventInvokeConfig")
        return 200, await self.s.update_function_event_invoke_config(_fn(r), _query(r, "Qualifier"), body)

    async def get_eic(self, r: Request) -> Result:
        return 200, await self.s.get_function_event_invoke_config(_fn(r), _query(r, "Qualifier"))

    async def delete_eic(self, r: Request) -> Result:
        await self.s.delete_function_event_invoke_config(_fn(r), _query(r, "Qualifier"))
        return 204, None

    async def list_eic(self, r: Request) -> Result:
        return 200, await self.s.list_function_event_invoke_configs(
            _fn(r), marker=_query(r, "Marker"), max_items=_max_items(r)
        )

    # account and tags
    async def account_settings(self, r: Request) -> Result:
        return 200, await self.s.get_account_settings()

    async def tag_resource(self, r: Request) -> Result:
        body = await _body(r, "TagResource")
        await self.s.tag_resource(unquote(r.path_params["Resource"]), body.get("Tags"))
        return 204, None

    async def untag_resource(self, r: Request) -> Result:
        await self.s.untag_resource(unquote(r.path_params["Resource"]), r.query_params.getlist("tagKeys"))
        return 204, None

    async def list_tags(self, r: Request) -> Result:
        return 200, await self.s.list_tags(unquote(r.path_params["Resource"]))

    # layers
    async def publish_layer_version(self, r: Request) -> Result:
        body = await _body(r, "PublishLayerVersion")
        return 201, await self.s.publish_layer_version(unquote(r.path_params["LayerName"]), body)

    async def layers(self, r: Request) -> Result:
        """GET /2018-10-31/layers is ListLayers, or GetLayerVersionByArn with ``find=LayerVersion``."""
        if r.query_params.get("find") == "LayerVersion":
            return 200, await self.s.get_layer_version_by_arn(_query(r, "Arn"))
        return 200, await self.s.list_layers(
            runtime=_query(r, "CompatibleRuntime"),
            architecture=_query(r, "CompatibleArchitecture"),
            marker=_query(r, "Marker"),
            max_items=_max_items(r),
        )

    async def list_layer_versions(self, r: Request) -> Result:
        return 200, await self.s.list_layer_versions(
            unquote(r.path_params["LayerName"]),
            runtime=_query(r, "CompatibleRuntime"),
            architecture=_query(r, "CompatibleArchitecture"),
            marker=_query(r, "Marker"),
            max_items=_max_items(r),
        )

    async def get_layer_version(self, r: Request) -> Result:
        p = r.path_params
        return 200, await self.s.get_layer_version(unquote(p["LayerName"]), unquote(p["VersionNumber"]))

    async def delete_layer_version(self, r: Request) -> Result:
        p = r.path_params
        await self.s.delete_layer_version(unquote(p["LayerName"]), unquote(p["VersionNumber"]))
        return 204, None

    # code download
    async def code(self, r: Request) -> Result:
        return 200, await self.s.get_code_zip(r.path_params["hex"])


def lambda_routes(service: FunctionService) -> list[Route]:
    """Starlette routes of Lambda's control plane (Invoke excluded) and of the code download route."""
    api = _Api(service)
    fn = "/2015-03-31/functions/{FunctionName:str}"
    layer_version = "/2018-10-31/layers/{LayerName:str}/versions/{VersionNumber:str}"
    table: list[tuple[str, str, str, Operation]] = [
        ("/2015-03-31/functions", "POST", "CreateFunction", api.create_function),
        ("/2015-03-31/functions/", "POST", "CreateFunction", api.create_function),
        ("/2015-03-31/functions", "GET", "ListFunctions", api.list_functions),
        ("/2015-03-31/functions/", "GET", "ListFunctions", api.list_functions),
        (fn, "GET", "GetFunction", api.get_function),
        (fn, "DELETE", "DeleteFunction", api.delete_function),
        (f"{fn}/configuration", "GET", "GetFunctionConfiguration", api.get_function_configuration),
        (f"{fn}/configuration", "PUT", "UpdateFunctionConfiguration", api.update_function_configuration),
        (f"{fn}/code", "PUT", "UpdateFunctionCode", api.update_function_code),
        (f"{fn}/versions", "POST", "PublishVersion", api.publish_version),
        (f"{fn}/versions", "GET", "ListVersionsByFunction", api.list_versions),
        (f"{fn}/aliases", "POST", "CreateAlias", api.create_alias),
        (f"{fn}/aliases", "GET", "ListAliases", api.list_aliases),
        (f"{fn}/aliases/{{Name:str}}", "GET", "GetAlias", api.get_alias),
        (f"{fn}/aliases/{{Name:str}}", "PUT", "UpdateAlias", api.update_alias),
        (f"{fn}/aliases/{{Name:str}}", "DELETE", "DeleteAlias", api.delete_alias),
        ("/2017-10-31/functions/{FunctionName:str}/concurrency", "PUT", "PutFunctionConcurrency", api.put_concurrency),
        (
            "/2017-10-31/functions/{FunctionName:str}/concurrency",
            "DELETE",
            "DeleteFunctionConcurrency",
            api.delete_concurrency,
        ),
        ("/2019-09-30/functions/{FunctionName:str}/concurrency", "GET", "GetFunctionConcurrency", api.get_concurrency),
        (
            "/2019-09-30/functions/{FunctionName:str}/provisioned-concurrency",
            "PUT",
            "PutProvisionedConcurrencyConfig",
            api.put_provisioned,
        ),
        (
            "/2019-09-30/functions/{FunctionName:str}/provisioned-concurrency",
            "GET",
            "GetProvisionedConcurrencyConfig",
            api.get_provisioned,
        ),
        (
            "/2019-09-30/functions/{FunctionName:str}/provisioned-concurrency",
            "DELETE",
            "DeleteProvisionedConcurrencyConfig",
            api.delete_provisioned,
        ),
        (
            "/2019-09-25/functions/{FunctionName:str}/event-invoke-config",
            "PUT",
            "PutFunctionEventInvokeConfig",
            api.put_eic,
        ),
        (
            "/2019-09-25/functions/{FunctionName:str}/event-invoke-config",
            "POST",
            "UpdateFunctionEventInvokeConfig",
            api.update_eic,
        ),
        (
            "/2019-09-25/functions/{FunctionName:str}/event-invoke-config",
            "GET",
            "GetFunctionEventInvokeConfig",
            api.get_eic,
        ),
        (
            "/2019-09-25/functions/{FunctionName:str}/event-invoke-config",
            "DELETE",
            "DeleteFunctionEventInvokeConfig",
            api.delete_eic,
        ),
        (
            "/2019-09-25/functions/{FunctionName:str}/event-invoke-config/list",
            "GET",
            "ListFunctionEventInvokeConfigs",
            api.list_eic,
        ),
        ("/2016-08-19/account-settings", "GET", "GetAccountSettings", api.account_settings),
        ("/2016-08-19/account-settings/", "GET", "GetAccountSettings", api.account_settings),
        ("/2017-03-31/tags/{Resource:str}", "POST", "TagResource", api.tag_resource),
        ("/2017-03-31/tags/{Resource:str}", "DELETE", "UntagResource", api.untag_resource),
        ("/2017-03-31/tags/{Resource:str}", "GET", "ListTags", api.list_tags),
        ("/2018-10-31/layers", "GET", "ListLayers", api.layers),
        ("/2018-10-31/layers/{LayerName:str}/versions", "POST", "PublishLayerVersion", api.publish_layer_version),
        ("/2018-10-31/layers/{LayerName:str}/versions", "GET", "ListLayerVersions", api.list_layer_versions),
        (layer_version, "GET", "GetLayerVersion", api.get_layer_version),
        (layer_version, "DELETE", "DeleteLayerVersion", api.delete_layer_version),
        ("/_squall/code/{hex:str}", "GET", "GetCode", api.code),
    ]
    # one Route per (path, method) keeps the model's one-operation-per-route shape; Starlette answers 405 only
    # when no route of the path takes the method
    return [
        Route(path, lambda_endpoint(operation, handler), methods=[method]) for path, method, operation, handler in table
    ]
