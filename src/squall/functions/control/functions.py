"""Functions: create, read, list, update (code and configuration), delete, and their tags.

Squall's own knobs travel in Lambda-compatible places and live in ``StoredFunction.squall``:

* ``network`` ("nat" | "none" | "host"): from the tag ``squall:network``; without it (and with an absent or empty
  ``VpcConfig``) "nat";
* ``snapshot`` (bool): the tag ``squall:snapshot=true`` (every version, ``$LATEST`` included), or Lambda's own
  ``SnapStart={"ApplyOn": "PublishedVersions"}`` (published versions only, as on Lambda);
* ``tags``: the function's tags (reported by GetFunction and ListTags).

Tags belong to the function: TagResource/UntagResource change ``$LATEST`` (a new RevisionId); a published
version keeps the network mode and snapshot flag it was published with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from squall.core.errors import InvalidParameterValue, ResourceNotFound
from squall.functions.control.layers import LayersMixin
from squall.functions.control.names import LATEST, is_version, parse_resource_arn
from squall.functions.control.shapes import check_max_items, render_config
from squall.functions.control.validation import (
    check_architectures,
    check_description,
    check_env,
    check_ephemeral_storage,
    check_handler,
    check_memory,
    check_role,
    check_runtime,
    check_snap_start,
    check_tags,
    check_timeout,
    check_unsupported,
    get_bool,
    get_int,
    get_str,
    squall_extras_from_tags,
)
from squall.functions.store.functions import RevisionMismatch
from squall.functions.store.records import StoredFunction

__all__ = ["FunctionsMixin"]

_DEFAULT_TIMEOUT = 3
_DEFAULT_MEMORY = 128
_DEFAULT_TMP = 512


def _logging_config(value: Any, name: str, current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    config = dict(current or {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"})
    if value is None:
        return config
    if not isinstance(value, Mapping):
        raise InvalidParameterValue("LoggingConfig must be an object")
    log_format = value.get("LogFormat", config.get("LogFormat", "Text"))
    if log_format != "Text":
        raise InvalidParameterValue(
            f"LoggingConfig.LogFormat {log_format} is not supported by Squall: function logs are plain text (Text)."
        )
    if value.get("LogGroup"):
        config["LogGroup"] = str(value["LogGroup"])
    return config


class FunctionsMixin(LayersMixin):
    # -- create --

    async def create_function(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """CreateFunction.  Returns the FunctionConfiguration (of the new version when ``Publish`` is set)."""
        check_unsupported(request)
        name = self.ref(get_str(request, "FunctionName", "functionName"), create=True).name
        role = check_role(get_str(request, "Role", "role"))
        runtime = check_runtime(get_str(request, "Runtime", "runtime"))
        handler = check_handler(get_str(request, "Handler", "handler"))
        description = check_description(get_str(request, "Description", "description") or "")
        timeout = get_int(request, "Timeout", "timeout")
        memory = get_int(request, "MemorySize", "memorySize")
        env = check_env(request["Environment"]) if request.get("Environment") is not None else None
        tmp_mb = (
            check_ephemeral_storage(request["EphemeralStorage"])
            if request.get("EphemeralStorage") is not None
            else _DEFAULT_TMP
        )
        architectures = check_architectures(request.get("Architectures"))
        apply_on = check_snap_start(request.get("SnapStart"))
        tags = check_tags(request.get("Tags"))
        network, snapshot = squall_extras_from_tags(tags)
        tracing = (request.get("TracingConfig") or {}).get("Mode", "PassThrough")
        logging_config = _logging_config(request.get("LoggingConfig"), name)
        publish = get_bool(request, "Publish", "publish")
        layers = await self.resolve_layers(request["Layers"]) if request.get("Layers") is not None else None
        data = self.zip_bytes(request.get("Code"))
        artifact = await self.io(self.code_store.put_zip, data)
        self.check_total_size(artifact.unpacked_size, layers.unpacked_size if layers else 0)
        config: dict[str, Any] = {
            "FunctionName": name,
            "FunctionArn": self.arn(name),
            "Runtime": runtime,
            "Role": role,
            "Handler": handler,
            "CodeSize": artifact.size,
            "Description": description,
            "Timeout": check_timeout(timeout) if timeout is not None else _DEFAULT_TIMEOUT,
            "MemorySize": check_memory(memory) if memory is not None else _DEFAULT_MEMORY,
            "LastModified": self.now(),
            "CodeSha256": artifact.sha256,
            "Version": LATEST,
            "TracingConfig": {"Mode": tracing},
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": architectures,
            "EphemeralStorage": {"Size": tmp_mb},
            "SnapStart": {"ApplyOn": apply_on, "OptimizationStatus": "Off"},
            "LoggingConfig": logging_config,
        }
        if env is not None:
            config["Environment"] = {"Variables": env}
        if layers is not None and layers.config:
            config["Layers"] = layers.config
        extras = {
            "network": network,
            "snapshot": snapshot,
            "tags": tags,
            "layers": layers.paths if layers is not None else [],
            "layers_unpacked": layers.unpacked_size if layers is not None else 0,
            "code_unpacked": artifact.unpacked_size,
        }
        stored = await self.io(self.store.create_function, name, config, str(artifact.path), extras)
        await self.notify(name, LATEST)
        if publish:
            stored = await self.publish(name)
        return render_config(stored, self.region, self.account_id)

    # -- read --

    async def get_function(self, function_name: str, qualifier: str | None = None) -> dict[str, Any]:
        """GetFunction: Configuration, Code (a URL on this server serving the zip), Tags, Concurrency."""
        ref = self.ref(function_name, qualifier)
        stored = await self.io(self.store.get_function, ref.name, ref.qualifier)
        latest = stored if stored.version == LATEST else await self.io(self.store.get_function, ref.name)
        reserved = await self.io(self.store.get_function_concurrency, ref.name)
        out: dict[str, Any] = {
            "Configuration": render_config(stored, self.region, self.account_id, shown_qualifier=ref.qualifier),
            "Code": {"RepositoryType": "S3", "Location": self.code_url(stored)},
        }
        tags = latest.squall.get("tags") or {}
        if tags:
            out["Tags"] = dict(tags)
        if reserved is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": reserved}
        return out

    async def get_function_configuration(self, function_name: str, qualifier: str | None = None) -> dict[str, Any]:
        ref = self.ref(function_name, qualifier)
        stored = await self.io(self.store.get_function, ref.name, ref.qualifier)
        return render_config(stored, self.region, self.account_id, shown_qualifier=ref.qualifier)

    async def list_functions(
        self, *, marker: str | None = None, max_items: int | None = None, function_version: str | None = None
    ) -> dict[str, Any]:
        """ListFunctions; ``function_version="ALL"`` lists every published version too (qualified ARNs)."""
        limit = check_max_items(max_items)
        if function_version not in (None, "ALL"):
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{function_version}' at 'functionVersion' failed to satisfy "
                "constraint: Member must satisfy enum value set: [ALL]"
            )
        if function_version is None:
            page, next_marker = await self.io(self.store.list_functions, marker, limit)
            items = [render_config(f, self.region, self.account_id, listing=True) for f in page]
        else:
            collected, next_marker = await self._list_all_versions(marker, limit)
            items = [
                render_config(
                    f,
                    self.region,
                    self.account_id,
                    shown_qualifier=LATEST if f.version == LATEST else None,
                    listing=True,
                )
                for f in collected
            ]
        out: dict[str, Any] = {"Functions": items}
        if next_marker is not None:
            out["NextMarker"] = next_marker
        return out

    async def _list_all_versions(self, marker: str | None, limit: int) -> tuple[list[StoredFunction], str | None]:
        """Every version of every function, in (name, version) order; the marker is "name:version"."""
        items: list[StoredFunction] = []
        name_marker: str | None = None
        if marker:
            name, _, version = marker.partition(":")
            if not name or not (version == LATEST or is_version(version)):
                raise InvalidParameterValue(f"Invalid marker: {marker}")
            try:
                rest, _ = await self.io(self.store.list_versions, name, version, limit + 1)
                items += rest
            except ResourceNotFound:
                pass  # the function went away since the last page: carry on with the next one
            name_marker = name
        while len(items) <= limit:
            page, name_marker = await self.io(self.store.list_functions, name_marker, limit + 1)
            for function in page:
                items += await self.all_versions(function.name)
                if len(items) > limit:
                    break
            if name_marker is None:
                break
        if len(items) > limit:
            last = items[limit - 1]
            return items[:limit], f"{last.name}:{last.version}"
        return items, None

    # -- update --

    async def update_function_configuration(self, function_name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """UpdateFunctionConfiguration of ``$LATEST``: the given fields change, the others are kept."""
        name = self.latest_ref(function_name)
        check_unsupported(request)
        revision = get_str(request, "RevisionId", "revisionId")
        changes: dict[str, Any] = {}
        if request.get("Role") is not None:
            changes["Role"] = check_role(get_str(request, "Role", "role"))
        if request.get("Runtime") is not None:
            changes["Runtime"] = check_runtime(get_str(request, "Runtime", "runtime"))
        if request.get("Handler") is not None:
            changes["Handler"] = check_handler(get_str(request, "Handler", "handler"))
        if request.get("Description") is not None:
            changes["Description"] = check_description(get_str(request, "Description", "description") or "")
        if (timeout := get_int(request, "Timeout", "timeout")) is not None:
            changes["Timeout"] = check_timeout(timeout)
        if (memory := get_int(request, "MemorySize", "memorySize")) is not None:
            changes["MemorySize"] = check_memory(memory)
        if request.get("EphemeralStorage") is not None:
            changes["EphemeralStorage"] = {"Size": check_ephemeral_storage(request["EphemeralStorage"])}
        if request.get("SnapStart") is not None:
            changes["SnapStart"] = {"ApplyOn": check_snap_start(request["SnapStart"]), "OptimizationStatus": "Off"}
        if request.get("TracingConfig") is not None:
            changes["TracingConfig"] = {"Mode": request["TracingConfig"].get("Mode", "PassThrough")}
        env = check_env(request["Environment"]) if request.get("Environment") is not None else None
        logging_value = request.get("LoggingConfig")
        layers = await self.resolve_layers(request["Layers"]) if request.get("Layers") is not None else None

        def mutate(current: StoredFunction) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
            config = {**current.config, **changes, "LastModified": self.now()}
            if env is not None:
                config["Environment"] = {"Variables": env}
            if logging_value is not None:
                config["LoggingConfig"] = _logging_config(logging_value, name, current.config.get("LoggingConfig"))
            if layers is None:
                return config, None, None
            self.check_total_size(int(current.squall.get("code_unpacked", 0)), layers.unpacked_size)
            config.pop("Layers", None)
            if layers.config:
                config["Layers"] = layers.config
            return config, {**current.squall, "layers": layers.paths, "layers_unpacked": layers.unpacked_size}, None

        stored = await self.update_latest(name, mutate, revision)
        await self.notify(name, LATEST)
        return render_config(stored, self.region, self.account_id)

    async def update_function_code(self, function_name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """UpdateFunctionCode (ZipFile only); ``Publish`` then publishes a version, ``DryRun`` only validates."""
        name = self.latest_ref(function_name)
        data = self.zip_bytes(request, field="zipFile")
        if request.get("Architectures") is not None:
            check_architectures(request["Architectures"])
        revision = get_str(request, "RevisionId", "revisionId")
        publish = get_bool(request, "Publish", "publish")
        dry_run = get_bool(request, "DryRun", "dryRun")
        artifact = await self.io(self.code_store.put_zip, data)

        def mutate(current: StoredFunction) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
            self.check_total_size(artifact.unpacked_size, int(current.squall.get("layers_unpacked", 0)))
            config = {
                **current.config,
                "CodeSha256": artifact.sha256,
                "CodeSize": artifact.size,
                "LastModified": self.now(),
            }
            return config, {**current.squall, "code_unpacked": artifact.unpacked_size}, str(artifact.path)

        if dry_run:
            current = await self.io(self.store.get_function, name)
            if revision is not None and revision != current.revision_id:
                raise RevisionMismatch()
            config, _, path = mutate(current)
            preview = StoredFunction(name, LATEST, config, path or current.code_path, current.squall)
            return render_config(preview, self.region, self.account_id)
        stored = await self.update_latest(name, mutate, revision)
        await self.notify(name, LATEST)
        if publish:
            stored = await self.publish(name, revision_id=stored.revision_id)
        return render_config(stored, self.region, self.account_id)

    # -- delete --

    async def delete_function(self, function_name: str, qualifier: str | None = None) -> None:
        """DeleteFunction: the whole function, or (with a version qualifier) one published version."""
        ref = self.ref(function_name, qualifier)
        if ref.qualifier is not None:
            await self.io(self.store.delete_version, ref.name, ref.qualifier)
            await self.notify(ref.name, str(int(ref.qualifier)))
            return
        versions = [v.version for v in await self.all_versions(ref.name)]
        aliases = [a["Name"] for a in await self.all_aliases(ref.name)]
        await self.io(self.store.delete_function, ref.name)
        await self.notify(ref.name, *versions, *aliases)

    # -- tags --

    def _tag_target(self, resource: str) -> str:
        ref = parse_resource_arn(resource, region=self.region, account_id=self.account_id)
        if ref.qualifier is not None:
            raise InvalidParameterValue(
                "Tags on function aliases and versions are not supported. Please specify a function ARN."
            )
        return ref.name

    async def _retag(self, name: str, edit: Mapping[str, str] | None, remove: list[str] | None) -> None:
        before: list[tuple[str, bool]] = []

        def mutate(current: StoredFunction) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
            tags = dict(current.squall.get("tags") or {})
            tags.update(edit or {})
            for key in remove or []:
                tags.pop(key, None)
            tags = check_tags(tags)
            network, snapshot = squall_extras_from_tags(tags)
            before[:] = [(current.squall.get("network", "nat"), bool(current.squall.get("snapshot")))]
            squall = {**current.squall, "tags": tags, "network": network, "snapshot": snapshot}
            return dict(current.config), squall, None

        stored = await self.update_latest(name, mutate)
        if before and before[0] != (stored.squall["network"], stored.squall["snapshot"]):
            await self.notify(name, LATEST)

    async def tag_resource(self, resource: str, tags: Mapping[str, str] | None) -> None:
        """TagResource on a function ARN.  ``squall:network`` / ``squall:snapshot`` change how ``$LATEST`` runs."""
        name = self._tag_target(resource)
        if not tags:
            raise InvalidParameterValue("Tags must not be empty: give at least one tag to add")
        await self._retag(name, check_tags(tags), None)

    async def untag_resource(self, resource: str, tag_keys: list[str]) -> None:
        name = self._tag_target(resource)
        await self._retag(name, None, list(tag_keys))

    async def list_tags(self, resource: str) -> dict[str, Any]:
        name = self._tag_target(resource)
        stored = await self.io(self.store.get_function, name)
        return {"Tags": dict(stored.squall.get("tags") or {})}

    # -- code download --

    async def get_code_zip(self, hex_digest: str) -> bytes:
        """The zip of a stored package (what GetFunction's Code.Location serves).  ResourceNotFound if unknown."""
        return await self.io(self.code_store.get_zip, hex_digest)
