"""Lambda layers: PublishLayerVersion, GetLayerVersion(ByArn), ListLayerVersions, ListLayers, DeleteLayerVersion,
and the checks of a function's ``Layers`` list.

A layer version's zip goes through the code store exactly like a function's package (size limits, path traversal,
symlinks, zip bombs: one validation, one extraction); the layer store keeps its metadata.  A function's
configuration reports its layers as Lambda does (``[{"Arn", "CodeSize"}]``); the extracted trees of its layers, in
order, are kept in the function's Squall extras (``squall["layers"]``) so a published version keeps the exact
content it was published with, even after the layer version is deleted (as on Lambda).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squall.core.errors import InvalidParameterValue, ResourceNotFound
from squall.functions.control.base import ServiceBase
from squall.functions.control.errors import UnsupportedFeature
from squall.functions.control.names import validation_error
from squall.functions.control.validation import check_architectures_list, check_runtime_name, get_str
from squall.functions.store.code import MAX_UNZIPPED_BYTES
from squall.functions.store.layers import StoredLayerVersion

__all__ = ["MAX_FUNCTION_LAYERS", "LayerRef", "LayersMixin", "ResolvedLayers"]

#: most layers a function may reference (Lambda's limit)
MAX_FUNCTION_LAYERS = 5
_LAYER_NAME = r"[a-zA-Z0-9-_]+"
_REGION = r"[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}"
_NAME_OR_ARN_RE = re.compile(
    rf"^((?P<arn>arn:(aws[a-zA-Z-]*)?:lambda:(?P<region>{_REGION}):(?P<account>\d{{12}}):layer:)?"
    rf"(?P<name>{_LAYER_NAME}))$"
)
_VERSION_ARN_RE = re.compile(
    rf"^arn:(aws[a-zA-Z-]*)?:lambda:(?P<region>{_REGION}):(?P<account>\d{{12}}):layer:(?P<name>{_LAYER_NAME})"
    r":(?P<version>[0-9]+)$"
)
_LAYER_NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:layer:[a-zA-Z0-9-_]+)|"
    r"[a-zA-Z0-9-_]+"
)
_MAX_LAYER_ITEMS = 50


@dataclass(frozen=True)
class LayerRef:
    name: str
    version: int


@dataclass(frozen=True)
class ResolvedLayers:
    """A function's ``Layers`` after validation: the configuration entries and the trees, both in order."""

    config: list[dict[str, Any]]
    paths: list[str]
    unpacked_size: int


class LayersMixin(ServiceBase):
    # -- names --

    def layer_arn(self, name: str, version: int | None = None) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:layer:{name}"
        return arn if version is None else f"{arn}:{version}"

    def _layer_name(self, value: Any) -> str:
        """A LayerName (``my-layer`` or its ARN) -> the name; other accounts and regions do not exist here."""
        text = str(value or "")
        m = _NAME_OR_ARN_RE.match(text) if len(text) <= 140 else None
        if m is None:
            raise validation_error(
                f"Value '{text}' at 'layerName' failed to satisfy constraint: Member must satisfy regular expression "
                f"pattern: {_LAYER_NAME_PATTERN}"
            )
        if m.group("arn") and (m.group("region") != self.region or m.group("account") != self.account_id):
            raise ResourceNotFound(f"Layer {text} does not exist: this Squall serves {self.layer_arn('*')[:-2]} only.")
        return m.group("name")

    @staticmethod
    def _version_number(value: Any) -> int:
        try:
            number = int(str(value))
        except ValueError:
            raise validation_error(
                f"Value '{value}' at 'versionNumber' failed to satisfy constraint: Member must be a number"
            )
        if number < 1:
            raise InvalidParameterValue(f"Layer version number {number} is invalid: versions start at 1.")
        return number

    def parse_layer_version_arn(self, arn: Any) -> LayerRef:
        text = str(arn or "")
        m = _VERSION_ARN_RE.match(text) if len(text) <= 2048 else None
        if m is None:
            raise validation_error(
                f"Value '{text}' at 'arn' failed to satisfy constraint: Member must satisfy regular expression "
                r"pattern: arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:layer:"
                r"[a-zA-Z0-9-_]+:[0-9]+"
            )
        if m.group("region") != self.region or m.group("account") != self.account_id:
            raise ResourceNotFound(f"Layer version {text} does not exist.")
        return LayerRef(m.group("name"), int(m.group("version")))

    # -- shapes --

    def _list_item(self, lv: StoredLayerVersion) -> dict[str, Any]:
        c = lv.config
        item: dict[str, Any] = {
            "LayerVersionArn": self.layer_arn(lv.name, lv.version),
            "Version": lv.version,
            "Description": c.get("Description", ""),
            "CreatedDate": c["CreatedDate"],
        }
        for key in ("CompatibleRuntimes", "LicenseInfo", "CompatibleArchitectures"):
            if c.get(key):
                item[key] = c[key]
        return item

    def _render(self, lv: StoredLayerVersion) -> dict[str, Any]:
        c = lv.config
        out = {
            "Content": {
                "Location": f"{self.public_url}/_squall/code/{Path(lv.code_path).name}",
                "CodeSha256": c["CodeSha256"],
                "CodeSize": c["CodeSize"],
            },
            "LayerArn": self.layer_arn(lv.name),
            **self._list_item(lv),
        }
        return out

    async def _get_version(self, name: str, version: int) -> StoredLayerVersion:
        lv = await self.io(self.layer_store.get, name, version)
        if lv is None:
            raise ResourceNotFound(f"Layer version {self.layer_arn(name, version)} does not exist.")
        return lv

    # -- operations --

    async def publish_layer_version(self, layer_name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        name = self._layer_name(layer_name)
        description = get_str(request, "Description", "description") or ""
        if len(description) > 256:
            raise validation_error(
                f"Value '{description}' at 'description' failed to satisfy constraint: Member must have length less "
                "than or equal to 256"
            )
        license_info = get_str(request, "LicenseInfo", "licenseInfo")
        if license_info is not None and len(license_info) > 512:
            raise validation_error(
                "Value at 'licenseInfo' failed to satisfy constraint: Member must have length less than or equal to 512"
            )
        runtimes = request.get("CompatibleRuntimes")
        if runtimes is not None:
            if not isinstance(runtimes, list) or len(runtimes) > 15:
                raise validation_error(
                    f"Value '{runtimes}' at 'compatibleRuntimes' failed to satisfy constraint: Member must have "
                    "length less than or equal to 15"
                )
            runtimes = [check_runtime_name(r, "compatibleRuntimes") for r in runtimes]
        architectures = request.get("CompatibleArchitectures")
        if architectures is not None:
            architectures = check_architectures_list(architectures, "compatibleArchitectures")
        content = request.get("Content")
        if content is None:
            raise validation_error("Value null at 'content' failed to satisfy constraint: Member must not be null")
        if isinstance(content, Mapping) and (content.get("S3Bucket") or content.get("S3Key")):
            raise UnsupportedFeature("S3 layer content locations are not supported by Squall: upload Content.ZipFile")
        data = self.zip_bytes(content, field="content")
        artifact = await self.io(self.code_store.put_zip, data)
        config: dict[str, Any] = {
            "Description": description,
            "CreatedDate": self.now(),
            "CodeSha256": artifact.sha256,
            "CodeSize": artifact.size,
        }
        if runtimes:
            config["CompatibleRuntimes"] = runtimes
        if license_info:
            config["LicenseInfo"] = license_info
        if architectures:
            config["CompatibleArchitectures"] = architectures
        lv = await self.io(self.layer_store.publish, name, config, str(artifact.path), artifact.unpacked_size)
        return self._render(lv)

    async def get_layer_version(self, layer_name: str, version_number: Any) -> dict[str, Any]:
        return self._render(await self._get_version(self._layer_name(layer_name), self._version_number(version_number)))

    async def get_layer_version_by_arn(self, arn: Any) -> dict[str, Any]:
        ref = self.parse_layer_version_arn(arn)
        return self._render(await self._get_version(ref.name, ref.version))

    @staticmethod
    def _matches(lv: StoredLayerVersion, runtime: str | None, architecture: str | None) -> bool:
        if runtime is not None and runtime not in (lv.config.get("CompatibleRuntimes") or []):
            return False
        return architecture is None or architecture in (lv.config.get("CompatibleArchitectures") or [])

    def _filters(self, runtime: str | None, architecture: str | None, max_items: int | None) -> int:
        if runtime is not None:
            check_runtime_name(runtime, "compatibleRuntime")
        if architecture is not None:
            check_architectures_list([architecture], "compatibleArchitecture")
        if max_items is None:
            return _MAX_LAYER_ITEMS
        if not 1 <= max_items <= _MAX_LAYER_ITEMS:
            raise validation_error(
                f"Value '{max_items}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 "
                f"and {_MAX_LAYER_ITEMS}"
            )
        return max_items

    async def list_layer_versions(
        self,
        layer_name: str,
        *,
        runtime: str | None = None,
        architecture: str | None = None,
        marker: str | None = None,
        max_items: int | None = None,
    ) -> dict[str, Any]:
        """Versions newest first; the marker is the last version number returned."""
        name = self._layer_name(layer_name)
        limit = self._filters(runtime, architecture, max_items)
        below = self._version_number(marker) if marker else None
        versions = [
            lv
            for lv in await self.io(self.layer_store.versions, name)
            if (below is None or lv.version < below) and self._matches(lv, runtime, architecture)
        ]
        out: dict[str, Any] = {"LayerVersions": [self._list_item(lv) for lv in versions[:limit]]}
        if len(versions) > limit:
            out["NextMarker"] = str(versions[limit - 1].version)
        return out

    async def list_layers(
        self,
        *,
        runtime: str | None = None,
        architecture: str | None = None,
        marker: str | None = None,
        max_items: int | None = None,
    ) -> dict[str, Any]:
        """Each layer with its newest version that matches the filters; the marker is the last layer name."""
        limit = self._filters(runtime, architecture, max_items)
        items: list[dict[str, Any]] = []
        next_marker: str | None = None
        for name in await self.io(self.layer_store.names):
            if marker is not None and name <= marker:
                continue
            latest = next(
                (
                    lv
                    for lv in await self.io(self.layer_store.versions, name)
                    if self._matches(lv, runtime, architecture)
                ),
                None,
            )
            if latest is None:
                continue
            if len(items) == limit:
                next_marker = items[-1]["LayerName"]
                break
            items.append(
                {"LayerName": name, "LayerArn": self.layer_arn(name), "LatestMatchingVersion": self._list_item(latest)}
            )
        out: dict[str, Any] = {"Layers": items}
        if next_marker is not None:
            out["NextMarker"] = next_marker
        return out

    async def delete_layer_version(self, layer_name: str, version_number: Any) -> None:
        """Idempotent, as on Lambda: deleting a version that does not exist succeeds."""
        await self.io(self.layer_store.delete, self._layer_name(layer_name), self._version_number(version_number))

    # -- a function's Layers --

    async def resolve_layers(self, value: Any) -> ResolvedLayers:
        """Validate a function's ``Layers`` (a list of layer version ARNs, at most 5, each existing, no layer
        twice) into its configuration entries and extracted trees, in order."""
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise validation_error(
                f"Value '{value}' at 'layers' failed to satisfy constraint: Member must be a list of layer version ARNs"
            )
        if len(value) > MAX_FUNCTION_LAYERS:
            raise InvalidParameterValue(
                f"Cannot reference more than {MAX_FUNCTION_LAYERS} layers; {len(value)} were given."
            )
        config: list[dict[str, Any]] = []
        paths: list[str] = []
        seen: dict[str, str] = {}
        size = 0
        for arn in value:
            try:
                ref = self.parse_layer_version_arn(arn)
            except ResourceNotFound:
                raise InvalidParameterValue(f"Layer version {arn} does not exist.")
            if ref.name in seen:
                raise InvalidParameterValue(
                    "Two different versions of the same layer are not allowed to be referenced in the same function. "
                    f"{seen[ref.name]} and {arn} are versions of the same layer."
                    if seen[ref.name] != arn
                    else f"Duplicate layers are not allowed: {arn} is listed twice."
                )
            seen[ref.name] = arn
            lv = await self.io(self.layer_store.get, ref.name, ref.version)
            if lv is None:
                raise InvalidParameterValue(f"Layer version {arn} does not exist.")
            config.append({"Arn": self.layer_arn(ref.name, ref.version), "CodeSize": lv.config["CodeSize"]})
            paths.append(lv.code_path)
            size += lv.unpacked_size
        return ResolvedLayers(config, paths, size)

    @staticmethod
    def check_total_size(code_unpacked: int, layers_unpacked: int) -> None:
        total = code_unpacked + layers_unpacked
        if total > MAX_UNZIPPED_BYTES:
            raise InvalidParameterValue(
                f"Function code combined with layers exceeds the maximum allowed size of {MAX_UNZIPPED_BYTES} bytes. "
                f"The actual size is {total} bytes."
            )
